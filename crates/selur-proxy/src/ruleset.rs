//! The rendered table and the nft JSON transactions that install it.

use std::collections::HashMap;

use serde_json::{json, Value};

/// The family of every table the proxy writes (IPv6 only).
pub const FAMILY: &str = "ip6";

/// A base chain's hook: type, hook and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    pub kind: &'static str,
    pub hook: &'static str,
    pub priority: i32,
}

/// A chain and its rules, each rule a list of nft JSON expressions.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub rules: Vec<Vec<Value>>,
}

/// A named set or verdict map.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub name: String,
    /// The key type: a string, or an array for concatenations.
    pub key_type: Value,
    /// `Some("verdict")` for a verdict map.
    pub map: Option<&'static str>,
    /// Filled by the data path (`update @set`) with a timeout: kept across
    /// updates instead of being flushed, and never given elements here.
    pub timeout: Option<u32>,
    /// Elements: keys for a set, `[key, verdict]` pairs for a map.
    pub elements: Vec<Value>,
}

impl Set {
    fn dynamic(&self) -> bool {
        self.timeout.is_some()
    }
}

/// One proxy table, fully rendered: sets and maps, then chains in the order
/// they are created (so that listing the table is stable).
#[derive(Debug, Clone, PartialEq)]
pub struct Ruleset {
    pub table: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// The chain called `name`, if any.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set or map called `name`, if any.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The transaction that replaces whatever table of that name exists by
    /// this one: `add table; delete table; add table; ...` in one batch, so
    /// the kernel swaps the whole table atomically (no moment without
    /// rules). Affinity entries are lost; [`Ruleset::update_from`] keeps
    /// them.
    pub fn replace_all(&self) -> Value {
        let mut commands = vec![
            json!({"add": {"table": self.table_obj()}}),
            json!({"delete": {"table": self.table_obj()}}),
            json!({"add": {"table": self.table_obj()}}),
        ];
        self.push_contents(&mut commands, None);
        json!({ "nftables": commands })
    }

    /// The transaction that turns `previous` (the table as last applied) into
    /// this one, touching only what changed (kube-proxy's partial sync):
    /// changed and vanished chains are flushed, changed static sets and maps
    /// flushed, vanished ones deleted, then the new and changed objects,
    /// elements and rules are added. Unchanged chains are not rewritten and
    /// dynamic (affinity) sets that stay keep their entries.
    pub fn update_from(&self, previous: &Ruleset) -> Value {
        let new = Index::of(self);
        let mut commands = vec![json!({"add": {"table": self.table_obj()}})];
        for chain in &previous.chains {
            if new.chains.get(chain.name.as_str()) != Some(&chain) {
                commands.push(json!({"flush": {"chain": self.chain_obj(&chain.name)}}));
            }
        }
        for set in previous.sets.iter().filter(|s| !s.dynamic()) {
            if let Some(new) = new.sets.get(set.name.as_str()) {
                if same_definition(new, set) && new.elements != set.elements {
                    commands.push(json!({"flush": {set_kind(set): self.set_ref(&set.name)}}));
                }
            }
        }
        for chain in &previous.chains {
            if !new.chains.contains_key(chain.name.as_str()) {
                commands.push(json!({"delete": {"chain": self.chain_obj(&chain.name)}}));
            }
        }
        for set in &previous.sets {
            // Gone, or same name with another definition (recreated below).
            if !self
                .set(&set.name)
                .is_some_and(|new| same_definition(new, set))
            {
                commands.push(json!({"delete": {set_kind(set): self.set_ref(&set.name)}}));
            }
        }
        self.push_contents(&mut commands, Some(previous));
        json!({ "nftables": commands })
    }

    fn table_obj(&self) -> Value {
        json!({"family": FAMILY, "name": self.table})
    }

    fn chain_obj(&self, name: &str) -> Value {
        json!({"family": FAMILY, "table": self.table, "name": name})
    }

    fn set_ref(&self, name: &str) -> Value {
        json!({"family": FAMILY, "table": self.table, "name": name})
    }

    /// Sets, then chains (rules may only name chains that exist), then set
    /// elements (map elements name chains), then rules; with `previous`, only
    /// what is new or changed (see [`Ruleset::update_from`]).
    fn push_contents(&self, commands: &mut Vec<Value>, previous: Option<&Ruleset>) {
        let old = previous.map(Index::of);
        let old_set = |set: &Set| {
            old.as_ref()
                .and_then(|o| o.sets.get(set.name.as_str()).copied())
                .filter(|old| same_definition(old, set))
        };
        let old_chain = |chain: &Chain| {
            old.as_ref()
                .and_then(|o| o.chains.get(chain.name.as_str()).copied())
        };
        for set in self.sets.iter().filter(|s| old_set(s).is_none()) {
            let mut obj = json!({
                "family": FAMILY,
                "table": self.table,
                "name": set.name,
                "type": set.key_type,
            });
            if let Some(map) = set.map {
                obj["map"] = json!(map);
            }
            if let Some(timeout) = set.timeout {
                obj["flags"] = json!(["timeout"]);
                obj["timeout"] = json!(timeout);
            }
            commands.push(json!({"add": {set_kind(set): obj}}));
        }
        for chain in self.chains.iter().filter(|c| old_chain(c).is_none()) {
            let mut obj = self.chain_obj(&chain.name);
            if let Some(hook) = chain.hook {
                obj["type"] = json!(hook.kind);
                obj["hook"] = json!(hook.hook);
                obj["prio"] = json!(hook.priority);
                obj["policy"] = json!("accept");
            }
            commands.push(json!({"add": {"chain": obj}}));
        }
        let elements_changed =
            |set: &Set| old_set(set).is_none_or(|old| old.elements != set.elements);
        for set in self
            .sets
            .iter()
            .filter(|s| !s.elements.is_empty() && elements_changed(s))
        {
            commands.push(json!({"add": {"element": {
                "family": FAMILY,
                "table": self.table,
                "name": set.name,
                "elem": set.elements,
            }}}));
        }
        for chain in self.chains.iter().filter(|c| old_chain(c) != Some(*c)) {
            for rule in &chain.rules {
                commands.push(json!({"add": {"rule": {
                    "family": FAMILY,
                    "table": self.table,
                    "chain": chain.name,
                    "expr": rule,
                }}}));
            }
        }
    }
}

/// Chains and sets by name (rulesets hold thousands of chains).
struct Index<'a> {
    chains: HashMap<&'a str, &'a Chain>,
    sets: HashMap<&'a str, &'a Set>,
}

impl<'a> Index<'a> {
    fn of(ruleset: &'a Ruleset) -> Self {
        Self {
            chains: ruleset
                .chains
                .iter()
                .map(|c| (c.name.as_str(), c))
                .collect(),
            sets: ruleset.sets.iter().map(|s| (s.name.as_str(), s)).collect(),
        }
    }
}

fn same_definition(a: &Set, b: &Set) -> bool {
    a.key_type == b.key_type && a.map == b.map && a.timeout == b.timeout
}

fn set_kind(set: &Set) -> &'static str {
    if set.map.is_some() {
        "map"
    } else {
        "set"
    }
}

/// The transaction that removes table `table` if it exists (`add` first, so
/// an absent table is no error).
pub fn remove_table(table: &str) -> Value {
    let obj = json!({"family": FAMILY, "name": table});
    json!({"nftables": [
        {"add": {"table": obj}},
        {"delete": {"table": obj}},
    ]})
}

/// Builders for the nft JSON expressions the proxy uses.
pub mod expr {
    use std::net::Ipv6Addr;

    use serde_json::{json, Value};

    use crate::config::Ipv6Net;

    pub fn payload(protocol: &str, field: &str) -> Value {
        json!({"payload": {"protocol": protocol, "field": field}})
    }

    pub fn meta(key: &str) -> Value {
        json!({"meta": {"key": key}})
    }

    pub fn matches(op: &str, left: Value, right: Value) -> Value {
        json!({"match": {"op": op, "left": left, "right": right}})
    }

    pub fn prefix(net: &Ipv6Net) -> Value {
        json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
    }

    pub fn saddr_is(ip: Ipv6Addr) -> Value {
        matches("==", payload("ip6", "saddr"), json!(ip.to_string()))
    }

    pub fn daddr_is(ip: Ipv6Addr) -> Value {
        matches("==", payload("ip6", "daddr"), json!(ip.to_string()))
    }

    pub fn l4proto(protocol: &str) -> Value {
        matches("==", meta("l4proto"), json!(protocol))
    }

    pub fn th_dport(port: u16) -> Value {
        matches("==", payload("th", "dport"), json!(port))
    }

    pub fn ct_state_new() -> Value {
        matches("in", json!({"ct": {"key": "state"}}), json!("new"))
    }

    pub fn fib_daddr_local() -> Value {
        matches(
            "==",
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            json!("local"),
        )
    }

    pub fn jump(target: &str) -> Value {
        json!({"jump": {"target": target}})
    }

    pub fn goto(target: &str) -> Value {
        json!({"goto": {"target": target}})
    }

    pub fn set_ref(name: &str) -> Value {
        json!(format!("@{name}"))
    }

    /// `ip6 daddr . meta l4proto . th dport`
    pub fn daddr_proto_port() -> Value {
        json!({"concat": [payload("ip6", "daddr"), meta("l4proto"), payload("th", "dport")]})
    }

    /// `meta l4proto . th dport`
    pub fn proto_port() -> Value {
        json!({"concat": [meta("l4proto"), payload("th", "dport")]})
    }

    pub fn vmap(key: Value, data: Value) -> Value {
        json!({"vmap": {"key": key, "data": data}})
    }

    pub fn dnat(ip: Ipv6Addr, port: u16) -> Value {
        json!({"dnat": {"addr": ip.to_string(), "port": port}})
    }

    pub fn masquerade() -> Value {
        json!({"masquerade": null})
    }

    pub fn ret() -> Value {
        json!({"return": null})
    }

    pub fn drop() -> Value {
        json!({"drop": null})
    }
}
