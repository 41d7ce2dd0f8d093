use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn rules(role: Role) -> Rules {
    Rules {
        role,
        links: 1,
        replace_unready_after: Duration::from_secs(300),
        rotate_after: None,
        max_candidates: 256,
        allow_local: true,
    }
}

fn reg(entries: &[(u32, &str)]) -> Vec<(u32, String)> {
    entries.iter().map(|(s, d)| (*s, d.to_string())).collect()
}

fn dials(actions: &[Action]) -> Vec<(u64, Endpoint)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { id, endpoint } => Some((*id, *endpoint)),
            _ => None,
        })
        .collect()
}

fn retires(actions: &[Action]) -> Vec<(u64, RetireReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Retire { id, reason } => Some((*id, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn descriptions_parse_as_cocoon_writes_them_and_nonsense_is_refused() {
    let d = parse_description("203.0.113.5:8443 203.0.113.5:8080", false).expect("two");
    assert_eq!(
        d.for_role(Role::Worker),
        "203.0.113.5:8443".parse().expect("a")
    );
    assert_eq!(
        d.for_role(Role::Client),
        "203.0.113.5:8080".parse().expect("a")
    );
    let one = parse_description("198.51.100.7:11001", false).expect("one");
    assert_eq!(one.for_workers, one.for_clients, "one address serves both");
    assert!(parse_description("[2001:db8::1]:443", false).is_ok());
    for (text, allow_local) in [
        ("", true),
        (" ", true),
        ("a:1 b:2 c:3", true),
        ("1.2.3.4:5 1.2.3.4:6 1.2.3.4:7", true),
        ("proxy.example.com:443", true),
        ("1.2.3.4", true),
        ("1.2.3.4:0", true),
        ("0.0.0.0:443", true),
        ("255.255.255.255:443", true),
        ("224.0.0.1:443", true),
        ("1.2.3.4:70000", true),
        ("127.0.0.1:11001", false),
        ("10.1.2.3:11001", false),
        ("192.168.1.1:1", false),
        ("100.64.0.1:1", false),
        ("169.254.0.1:1", false),
        ("[::1]:1", false),
        ("[fd00::1]:1", false),
        ("[::ffff:127.0.0.1]:1", false),
    ] {
        assert!(
            parse_description(text, allow_local).is_err(),
            "{text:?} must be refused"
        );
    }
    assert_eq!(
        parse_description(&"1".repeat(200), true),
        Err(DescriptionError::TooLong)
    );
    assert!(parse_description("127.0.0.1:11001 127.0.0.1:11002", true).is_ok());
}

#[test]
fn picks_at_random_among_registered_proxies_with_a_seeded_rng() {
    let entries = reg(&[
        (1, "127.0.0.1:1001 127.0.0.1:2001"),
        (2, "127.0.0.1:1002 127.0.0.1:2002"),
        (3, "127.0.0.1:1003 127.0.0.1:2003"),
    ]);
    let now = Instant::now();
    let first = |seed: u8| {
        let mut c = DiscoveryCore::new(rules(Role::Client), [seed; 32]);
        c.handle_root(1, &entries);
        dials(&c.poll(now))
    };
    // Deterministic for a seed, and every proxy is reachable by some seed.
    assert_eq!(first(7), first(7));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let d = first(seed);
        assert_eq!(d.len(), 1, "one link by default");
        assert_eq!(
            d[0].1.addr.port() / 1000,
            2,
            "a client dials the client port"
        );
        seen.insert(d[0].1.seqno);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // A worker dials the worker port.
    let mut w = DiscoveryCore::new(rules(Role::Worker), [1; 32]);
    w.handle_root(1, &entries);
    assert_eq!(dials(&w.poll(now))[0].1.addr.port() / 1000, 1);
}

#[test]
fn keeps_a_bounded_number_of_distinct_links_and_follows_the_root() {
    let mut r = rules(Role::Client);
    r.links = 2;
    let mut c = DiscoveryCore::new(r, [3; 32]);
    let t0 = Instant::now();
    // Nothing registered: nothing to do.
    c.handle_root(1, &[]);
    assert!(c.poll(t0).is_empty());
    c.handle_root(2, &reg(&[(1, "127.0.0.1:1001")]));
    let d = dials(&c.poll(t0));
    assert_eq!(d.len(), 1, "only one proxy registered");
    c.handle_ready(d[0].0, t0);
    assert!(
        c.poll(t0).is_empty(),
        "the same proxy is never linked twice"
    );
    // A second proxy registered later is picked up.
    c.handle_root(3, &reg(&[(1, "127.0.0.1:1001"), (2, "127.0.0.1:1002")]));
    let d2 = dials(&c.poll(t0));
    assert_eq!(d2.len(), 1);
    assert_eq!(d2[0].1.seqno, 2);
    c.handle_ready(d2[0].0, t0);
    // A third changes nothing: two links are enough.
    c.handle_root(
        4,
        &reg(&[
            (1, "127.0.0.1:1001"),
            (2, "127.0.0.1:1002"),
            (3, "127.0.0.1:1003"),
        ]),
    );
    assert!(c.poll(t0).is_empty());
    // The first leaves the root: its link is retired and the third takes its place.
    c.handle_root(5, &reg(&[(2, "127.0.0.1:1002"), (3, "127.0.0.1:1003")]));
    let a = c.poll(t0);
    assert_eq!(retires(&a), vec![(d[0].0, RetireReason::LeftRoot)]);
    assert_eq!(dials(&a)[0].1.seqno, 3);
    // An address change under the same seqno is a new proxy.
    c.handle_root(6, &reg(&[(2, "127.0.0.1:1102"), (3, "127.0.0.1:1003")]));
    let a = c.poll(t0);
    assert_eq!(retires(&a), vec![(d2[0].0, RetireReason::LeftRoot)]);
    assert_eq!(dials(&a)[0].1.addr.port(), 1102);
    assert_eq!(c.links().len(), 2);
}

#[test]
fn unparsable_duplicate_and_excess_descriptions_are_ignored() {
    let mut r = rules(Role::Worker);
    r.max_candidates = 3;
    r.allow_local = false;
    let mut c = DiscoveryCore::new(r, [0; 32]);
    c.handle_root(
        1,
        &reg(&[
            (5, "203.0.113.9:1"),
            (1, "not an address"),
            (2, "127.0.0.1:1"),
            (3, "203.0.113.9:1 203.0.113.9:2"),
            (4, "203.0.113.10:1"),
        ]),
    );
    // Seqnos 1..=3 are considered: one bad, one local, one good; 4 and 5 are beyond the cap.
    let j = c.json(Instant::now());
    assert_eq!(j["registered_usable"], 1);
    assert_eq!(j["registered_ignored"], 2);
    assert_eq!(j["registered_beyond_cap"], 2);
    let d = dials(&c.poll(Instant::now()));
    assert_eq!(d[0].1.seqno, 3);
    // A duplicate address under a later seqno is ignored.
    let mut c = DiscoveryCore::new(rules(Role::Worker), [0; 32]);
    c.handle_root(
        1,
        &reg(&[(1, "127.0.0.1:9"), (2, "127.0.0.1:9 127.0.0.1:10")]),
    );
    assert_eq!(c.json(Instant::now())["registered_usable"], 1);
}

#[test]
fn a_proxy_unready_for_long_is_replaced_when_another_exists() {
    let mut c = DiscoveryCore::new(rules(Role::Client), [9; 32]);
    let t0 = Instant::now();
    c.handle_root(1, &reg(&[(1, "127.0.0.1:1001")]));
    let first = dials(&c.poll(t0))[0].0;
    // The only registered proxy is kept, however long it stays down.
    assert!(c.poll(t0 + Duration::from_secs(3600)).is_empty());
    c.handle_root(2, &reg(&[(1, "127.0.0.1:1001"), (2, "127.0.0.1:1002")]));
    let a = c.poll(t0 + Duration::from_secs(3600));
    assert_eq!(retires(&a), vec![(first, RetireReason::Unready)]);
    let second = dials(&a)[0];
    assert_eq!(second.1.seqno, 2);
    // Ready, then down: the clock restarts at the drop.
    let t1 = t0 + Duration::from_secs(3600);
    c.handle_ready(second.0, t1);
    assert!(c.poll(t1 + Duration::from_secs(1000)).is_empty());
    let t2 = t1 + Duration::from_secs(1000);
    c.handle_down(second.0, t2);
    assert!(c.poll(t2 + Duration::from_secs(299)).is_empty());
    let a = c.poll(t2 + Duration::from_secs(300));
    assert_eq!(retires(&a), vec![(second.0, RetireReason::Unready)]);
    // The first one was given up less than replace_unready_after ago, but it is the only other.
    assert_eq!(dials(&a)[0].1.seqno, 1);
}

#[test]
fn rotation_makes_the_new_link_ready_before_the_old_one_goes() {
    let mut r = rules(Role::Worker);
    r.rotate_after = Some(Duration::from_secs(60));
    let mut c = DiscoveryCore::new(r, [4; 32]);
    let t0 = Instant::now();
    c.handle_root(1, &reg(&[(1, "127.0.0.1:1001"), (2, "127.0.0.1:1002")]));
    let old = dials(&c.poll(t0))[0];
    c.handle_ready(old.0, t0);
    assert!(c.poll(t0 + Duration::from_secs(59)).is_empty());
    let t1 = t0 + Duration::from_secs(60);
    let a = c.poll(t1);
    assert!(
        retires(&a).is_empty(),
        "the old link stays until the new one is ready"
    );
    let new = dials(&a)[0];
    assert_ne!(new.1.addr, old.1.addr);
    assert!(c.poll(t1).is_empty());
    c.handle_ready(new.0, t1);
    assert_eq!(retires(&c.poll(t1)), vec![(old.0, RetireReason::Rotated)]);
    // A replacement that never gets ready is given up; the old link stays and tries later.
    let mut r = rules(Role::Worker);
    r.rotate_after = Some(Duration::from_secs(60));
    r.replace_unready_after = Duration::from_secs(10);
    let mut c = DiscoveryCore::new(r, [4; 32]);
    c.handle_root(
        1,
        &reg(&[
            (1, "127.0.0.1:1001"),
            (2, "127.0.0.1:1002"),
            (3, "127.0.0.1:1003"),
        ]),
    );
    let old = dials(&c.poll(t0))[0];
    c.handle_ready(old.0, t0);
    let repl = dials(&c.poll(t1))[0];
    let a = c.poll(t1 + Duration::from_secs(10));
    assert_eq!(retires(&a), vec![(repl.0, RetireReason::Unready)]);
    assert!(
        dials(&a).is_empty(),
        "the old link still counts: no third link"
    );
    assert_eq!(c.links().len(), 1);
    assert_eq!(c.links()[0].0, old.0);
    // With a single registered proxy there is nothing to rotate to.
    let mut r = rules(Role::Worker);
    r.rotate_after = Some(Duration::from_secs(1));
    let mut c = DiscoveryCore::new(r, [4; 32]);
    c.handle_root(1, &reg(&[(1, "127.0.0.1:1001")]));
    let only = dials(&c.poll(t0))[0];
    c.handle_ready(only.0, t0);
    assert!(c.poll(t0 + Duration::from_secs(100)).is_empty());
}

#[test]
fn config_is_validated() {
    let mut cfg = DiscoveryConfig::default();
    assert!(
        cfg.validate("client", false).is_ok(),
        "static needs nothing"
    );
    cfg.source = ProxySource::Root;
    let e = cfg
        .validate("client", false)
        .expect_err("root needs the chain");
    assert!(e.to_string().contains("[chain]"), "{e}");
    assert!(cfg.validate("client", true).is_ok());
    for bad in [
        DiscoveryConfig {
            links: 0,
            ..cfg.clone()
        },
        DiscoveryConfig {
            links: MAX_LINKS + 1,
            ..cfg.clone()
        },
        DiscoveryConfig {
            replace_unready_after: Duration::from_millis(10),
            ..cfg.clone()
        },
        DiscoveryConfig {
            rotate_after: Duration::from_millis(10),
            ..cfg.clone()
        },
        DiscoveryConfig {
            max_candidates: 0,
            ..cfg.clone()
        },
    ] {
        assert!(bad.validate("worker", true).is_err(), "{bad:?}");
    }
    let parsed: DiscoveryConfig =
        toml::from_str("source = \"root\"\nlinks = 2\nrotate_after = \"1h\"").expect("toml");
    assert_eq!(
        parsed.rules(Role::Client, false).rotate_after,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        DiscoveryConfig::default()
            .rules(Role::Client, false)
            .rotate_after,
        None
    );
}

#[tokio::test]
async fn the_shell_starts_links_retires_them_and_they_end_on_their_own() {
    let list = Arc::new(Mutex::new((1u32, reg(&[(1, "127.0.0.1:1001")]))));
    let source = list.clone();
    let proxies: shell::ProxyList = Box::new(move |known| {
        let l = source.lock().expect("lock");
        (known != Some(l.0)).then(|| l.clone())
    });
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let status = Arc::new(shell::DiscoveryStatus::default());
    let task = tokio::spawn(shell::run(
        rules(Role::Client),
        [5; 32],
        proxies,
        move |h: LinkHandle| {
            let started_tx = started_tx.clone();
            let ended_tx = ended_tx.clone();
            async move {
                h.control.ready();
                let _ = started_tx.send(h.addr.port());
                h.control.retired().await;
                let _ = ended_tx.send(h.addr.port());
            }
        },
        status.clone(),
        Duration::from_millis(10),
        shutdown.clone(),
    ));
    let wait = Duration::from_secs(5);
    assert_eq!(
        tokio::time::timeout(wait, started.recv())
            .await
            .expect("dial"),
        Some(1001)
    );
    *list.lock().expect("lock") = (2, reg(&[(2, "127.0.0.1:1002")]));
    assert_eq!(
        tokio::time::timeout(wait, ended.recv())
            .await
            .expect("retire"),
        Some(1001)
    );
    assert_eq!(
        tokio::time::timeout(wait, started.recv())
            .await
            .expect("dial"),
        Some(1002)
    );
    let ok = tokio::time::timeout(wait, async {
        loop {
            let j = status.json();
            if j["links"][0]["ready"] == true && j["root_version"] == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{}", status.json());
    shutdown.cancel();
    tokio::time::timeout(wait, task)
        .await
        .expect("ends")
        .expect("no panic");
}
