//! Argument words of Containerfile instructions, the way Docker reads them:
//! quotes (`"..."`, `'...'`), backslash escapes, variable substitution
//! (`$V`, `${V}`, `${V:-default}`, `${V:+alt}`, `${V-default}`,
//! `${V+alt}`), the exec (JSON array) form and leading `--flag=value`s.

/// Looks variables up (ENV first, then ARG); `None` means unset.
pub(crate) type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Split `s` into words, removing quotes and escapes and expanding
/// variables (not inside single quotes).
pub(crate) fn split(s: &str, vars: Vars<'_>) -> Result<Vec<String>, String> {
    process(s, vars, true)
}

/// Process `s` as one word: quotes removed and variables expanded, but
/// white space kept.
pub(crate) fn word(s: &str, vars: Vars<'_>) -> Result<String, String> {
    Ok(process(s, vars, false)?.join(""))
}

fn process(s: &str, vars: Vars<'_>, split: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.trim().chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if split && c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
            }
            '\\' => {
                in_word = true;
                match chars.get(i + 1) {
                    Some(n) => cur.push(*n),
                    None => cur.push('\\'),
                }
                i += 2;
            }
            '\'' => {
                in_word = true;
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or("unterminated single quote: close it with '")?;
                cur.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated double quote: close it with \"".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$')) => {
                            cur.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = expand(&chars, i, vars, &mut cur)?,
                        Some(&c) => {
                            cur.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '$' => {
                let mut value = String::new();
                i = expand(&chars, i, vars, &mut value)?;
                if !split {
                    cur.push_str(&value);
                    continue;
                }
                // Unquoted expansions are split into words, like a shell does.
                if value.starts_with(char::is_whitespace) && in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                for (k, piece) in value.split_whitespace().enumerate() {
                    if k > 0 {
                        words.push(std::mem::take(&mut cur));
                    }
                    cur.push_str(piece);
                    in_word = true;
                }
                if value.ends_with(char::is_whitespace) && in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word || !split {
        words.push(cur);
    }
    Ok(words)
}

/// Expand the variable reference starting at `chars[i] == '$'`; returns
/// the index after it. A `$` not followed by a name is literal.
fn expand(chars: &[char], i: usize, vars: Vars<'_>, out: &mut String) -> Result<usize, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unterminated ${...}: close it with }")?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let name_len = inner.chars().take_while(|&c| is_name(c)).count();
            let (name, op) = inner.split_at(name_len);
            if name.is_empty() {
                return Err(format!(
                    "bad substitution ${{{inner}}}: expected a variable name"
                ));
            }
            let value = vars(name);
            let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let expanded = if op.is_empty() {
                value.unwrap_or_default()
            } else if let Some(d) = op.strip_prefix(":-") {
                if set_nonempty {
                    value.unwrap_or_default()
                } else {
                    word(d, vars)?
                }
            } else if let Some(a) = op.strip_prefix(":+") {
                if set_nonempty {
                    word(a, vars)?
                } else {
                    String::new()
                }
            } else if let Some(d) = op.strip_prefix('-') {
                match value {
                    Some(v) => v,
                    None => word(d, vars)?,
                }
            } else if let Some(a) = op.strip_prefix('+') {
                if value.is_some() {
                    word(a, vars)?
                } else {
                    String::new()
                }
            } else {
                return Err(format!(
                    "unsupported substitution ${{{inner}}}: use $V, ${{V}}, ${{V:-default}} or ${{V:+alt}}"
                ));
            };
            out.push_str(&expanded);
            Ok(i + 3 + close)
        }
        Some(&c) if is_name(c) && !c.is_ascii_digit() => {
            let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(&vars(&name).unwrap_or_default());
            Ok(i + 1 + len)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

/// The exec form: `Some` if `s` is a JSON array of strings.
pub(crate) fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str(t).ok()
}

/// Leading `--name=value` (or bare `--name`) flags and the rest of the line.
pub(crate) fn flags(s: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while let Some(f) = rest.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let token = &f[..end];
        match token.split_once('=') {
            Some((n, v)) => out.push((n.to_string(), Some(v.to_string()))),
            None => out.push((token.to_string(), None)),
        }
        rest = f[end..].trim_start();
    }
    (out, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: &str) -> Option<String> {
        match n {
            "A" => Some("x y".into()),
            "E" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn words_quotes_and_vars() {
        assert_eq!(
            split(r#"a "b c" 'd $A' $A"#, &v).unwrap(),
            ["a", "b c", "d $A", "x", "y"]
        );
        assert_eq!(
            split(r#"k="$A" k2=${B:-def} k3=${E:-d} k4=${A:+alt}"#, &v).unwrap(),
            ["k=x y", "k2=def", "k3=d", "k4=alt"]
        );
        assert_eq!(word(r#"/my\ dir"#, &v).unwrap(), "/my dir");
        assert_eq!(split(r#"a\"b $5"#, &v).unwrap(), ["a\"b", "$5"]);
        assert!(split("\"open", &v).is_err());
        assert_eq!(json_array(r#"["/a", "-b"]"#).unwrap(), ["/a", "-b"]);
        assert_eq!(json_array("/a -b"), None);
        let (f, rest) = flags("--from=a --link  src dst");
        assert_eq!(
            f,
            [
                ("from".to_string(), Some("a".to_string())),
                ("link".to_string(), None)
            ]
        );
        assert_eq!(rest, "src dst");
    }
}
