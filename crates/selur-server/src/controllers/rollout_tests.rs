use super::*;

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn rs(name: &str, created: &str, replicas: i32, available: i32) -> Rs {
    Rs {
        name: name.into(),
        revision: 1,
        created: created.into(),
        replicas,
        available,
        pods: replicas,
        status_replicas: replicas,
        desired: None,
        max: None,
        settled: true,
    }
}

fn rolling_spec(replicas: i32, surge: i32, unavailable: i32) -> Spec {
    Spec {
        replicas,
        strategy: Strategy::RollingUpdate {
            max_surge: surge,
            max_unavailable: unavailable,
        },
        paused: false,
        revision_history_limit: 10,
    }
}

#[test]
fn surge_rounds_up_and_unavailable_rounds_down() {
    assert_eq!(resolve(Some(&pct("25%")), Some(&pct("25%")), 10), (3, 2));
    assert_eq!(resolve(Some(&pct("25%")), Some(&pct("25%")), 1), (1, 0));
    assert_eq!(
        resolve(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
        (0, 1)
    );
    assert_eq!(
        resolve(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(20)), 5),
        (2, 5)
    );
    assert_eq!(resolve(None, None, 3), (0, 1));
    assert_eq!(scaled_value(Some(&pct("33%")), 10, true), 4);
    assert_eq!(scaled_value(Some(&pct("33%")), 10, false), 3);
}

#[test]
fn first_rollout_creates_the_new_replica_set_at_full_size() {
    let spec = rolling_spec(3, 1, 0);
    assert_eq!(plan(&spec, None, &[]), vec![Action::Create { replicas: 3 }]);
}

#[test]
fn a_new_template_surges_then_waits_for_readiness() {
    let spec = rolling_spec(10, 3, 2);
    let old = rs("old", "1", 10, 10);
    // The new ReplicaSet starts at maxSurge.
    assert_eq!(
        plan(&spec, None, std::slice::from_ref(&old)),
        vec![Action::Create { replicas: 3 }]
    );
    let new = rs("new", "2", 3, 0);
    // Old scaled down only by maxUnavailable while the new pods are not ready.
    assert_eq!(
        plan(&spec, Some(&new), std::slice::from_ref(&old)),
        vec![Action::Scale {
            name: "old".into(),
            from: 10,
            to: 8
        }]
    );
    // The new one grows to the surge limit again, then nothing more until
    // new pods become available.
    let old8 = rs("old", "1", 8, 8);
    assert_eq!(
        plan(&spec, Some(&new), std::slice::from_ref(&old8)),
        vec![Action::Scale {
            name: "new".into(),
            from: 3,
            to: 5
        }]
    );
    let new5 = rs("new", "2", 5, 0);
    assert_eq!(
        plan(&spec, Some(&new5), std::slice::from_ref(&old8)),
        vec![]
    );
}

/// Drive a whole rolling update, pods of the new ReplicaSet becoming available
/// one step after they are created; availability never drops below the minimum.
#[test]
fn rolling_update_keeps_minimum_availability_to_the_end() {
    for (replicas, surge, unavailable) in [(10, 3, 2), (10, 0, 1), (10, 1, 0), (3, 1, 0), (5, 5, 5)]
    {
        let spec = rolling_spec(replicas, surge, unavailable);
        let mut old = rs("old", "1", replicas, replicas);
        let mut new: Option<Rs> = None;
        for step in 0..200 {
            // Pods that existed at the last step are now available.
            if let Some(n) = &mut new {
                n.available = n.replicas;
            }
            let actions = plan(&spec, new.as_ref(), std::slice::from_ref(&old));
            if actions.is_empty() {
                break;
            }
            for a in actions {
                match a {
                    Action::Create { replicas } => new = Some(rs("new", "2", replicas, 0)),
                    Action::Scale { name, to, .. } if name == "old" => {
                        old.replicas = to;
                        old.available = old.available.min(to);
                    }
                    Action::Scale { to, .. } => {
                        if let Some(n) = &mut new {
                            n.replicas = to;
                        }
                    }
                    Action::Delete { .. } => {}
                }
                let avail = old.available + new.as_ref().map_or(0, |n| n.available.min(n.replicas));
                assert!(
                    avail >= replicas - unavailable,
                    "step {step}: {avail} available"
                );
                let total = old.replicas + new.as_ref().map_or(0, |n| n.replicas);
                assert!(total <= replicas + surge, "step {step}: {total} pods");
            }
            assert!(step < 199, "rollout did not finish");
        }
        assert_eq!(old.replicas, 0);
        assert_eq!(new.map(|n| n.replicas), Some(replicas));
    }
}

#[test]
fn unavailable_old_pods_are_removed_first() {
    let spec = rolling_spec(4, 0, 1);
    let new = rs("new", "3", 0, 0);
    let broken = rs("broken", "2", 2, 0);
    let good = rs("good", "1", 4, 4);
    let a = plan(&spec, Some(&new), &[good.clone(), broken.clone()]);
    // Surge 0 and 6 pods > 4: no scale-up; unhealthy ones go first.
    assert!(
        a.contains(&Action::Scale {
            name: "broken".into(),
            from: 2,
            to: 0
        }),
        "{a:?}"
    );
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_pods_to_go() {
    let spec = Spec {
        strategy: Strategy::Recreate,
        ..rolling_spec(3, 0, 0)
    };
    let old = rs("old", "1", 3, 3);
    assert_eq!(
        plan(&spec, None, std::slice::from_ref(&old)),
        vec![Action::Scale {
            name: "old".into(),
            from: 3,
            to: 0
        }]
    );
    let mut going = rs("old", "1", 0, 0);
    going.pods = 2;
    assert_eq!(plan(&spec, None, std::slice::from_ref(&going)), vec![]);
    going.pods = 0;
    going.status_replicas = 0;
    assert_eq!(
        plan(&spec, None, std::slice::from_ref(&going)),
        vec![Action::Create { replicas: 3 }]
    );
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out() {
    let mut spec = rolling_spec(5, 1, 1);
    spec.paused = true;
    let old = rs("old", "1", 3, 3);
    // The template changed (no new ReplicaSet) but the deployment is paused.
    assert_eq!(
        plan(&spec, None, std::slice::from_ref(&old)),
        vec![Action::Scale {
            name: "old".into(),
            from: 3,
            to: 5
        }]
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut spec = rolling_spec(20, 3, 2);
    spec.paused = true;
    let mut old = rs("old", "1", 8, 8);
    let mut new = rs("new", "2", 5, 5);
    old.max = Some(13);
    new.max = Some(13);
    let a = plan(&spec, Some(&new), std::slice::from_ref(&old));
    // 23 allowed: 8 -> 14, 5 -> 9 (rounded shares, leftover to the largest).
    let total: i32 = a
        .iter()
        .map(|x| match x {
            Action::Scale { to, .. } => *to,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 23, "{a:?}");
}

#[test]
fn a_changed_replica_count_is_a_scaling_event() {
    let spec = rolling_spec(6, 1, 1);
    let mut cur = rs("cur", "1", 3, 3);
    cur.desired = Some(3);
    assert_eq!(
        plan(&spec, Some(&cur), &[]),
        vec![Action::Scale {
            name: "cur".into(),
            from: 3,
            to: 6
        }]
    );
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_first() {
    let mut spec = rolling_spec(2, 1, 0);
    spec.revision_history_limit = 1;
    let new = rs("new", "9", 2, 2);
    let mut olds = Vec::new();
    for (i, name) in ["r1", "r2", "r3"].iter().enumerate() {
        let mut r = rs(name, &i.to_string(), 0, 0);
        r.revision = i as i64 + 1;
        olds.push(r);
    }
    assert_eq!(
        plan(&spec, Some(&new), &olds),
        vec![
            Action::Delete { name: "r1".into() },
            Action::Delete { name: "r2".into() }
        ]
    );
    // Not while an old one still has pods.
    olds[0].status_replicas = 1;
    assert_eq!(
        plan(&spec, Some(&new), &olds),
        vec![Action::Delete { name: "r2".into() }]
    );
}
