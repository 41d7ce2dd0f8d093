use super::*;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// Some time in 2026.
const T0: u64 = 1_780_000_000;

fn rules(test_key: bool) -> ScheduleRules {
    ScheduleRules {
        rotate_every: HOUR,
        key_lifetime: DAY,
        announce_retry: 60,
        test_key,
    }
}

/// Seeds 1, 2, 3, … in order: tests can tell keys apart.
fn seeds() -> impl FnMut() -> SecretSeed {
    let mut n = 0u8;
    move || {
        n += 1;
        SecretSeed::from_bytes([n; 32])
    }
}

fn tick(core: &mut KeyManagerCore, now: u64, next: &mut impl FnMut() -> SecretSeed) -> Tick {
    core.tick(now, next)
}

#[test]
fn the_test_key_constants_are_upstreams() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.encode(TEST_KEY_SEED),
        "BwrYLmEy2rMgZ/tyCv0AYFVaZPkFu+wNwoSQiJUbOmM="
    );
    assert_eq!(
        SecretSeed::from_bytes(TEST_KEY_SEED).public_key(),
        TEST_KEY_PUBLIC
    );
    assert_eq!(
        hex::encode(TEST_KEY_PUBLIC),
        "fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818"
    );
}

#[test]
fn a_first_key_is_generated_at_once_and_valid_a_day() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    assert!(core.poll_new_key(T0));
    let t = tick(&mut core, T0, &mut seeds());
    assert!(t.changed());
    let added = t.added.expect("a key");
    assert_eq!(added.valid_until, T0 + DAY);
    assert_eq!(added.public, SecretSeed::from_bytes([1; 32]).public_key());
    assert!(!core.poll_new_key(T0));
    let served = core.served_keys(T0);
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].private_key, [1; 32]);
    assert_eq!(served[0].valid_until_utime, (T0 + DAY) as i32);
}

#[test]
fn a_new_key_every_rotation_and_expired_ones_dropped() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    let mut next = seeds();
    let mut generated = 0;
    // Two days, checked every 10 minutes.
    for step in 0..(2 * DAY / 600) {
        let now = T0 + step * 600;
        let t = tick(&mut core, now, &mut next);
        generated += usize::from(t.added.is_some());
        // Never a moment without a key valid for at least the rotation period.
        assert!(core
            .keys()
            .iter()
            .any(|k| k.valid_until >= now + HOUR && k.created_at <= now));
        assert!(core.keys().iter().all(|k| k.valid_until > now));
    }
    assert_eq!(generated, 48, "one key an hour");
    // About a day's worth alive: 24 keys.
    assert_eq!(core.keys().len(), 24);
    let served = core.served_keys(T0 + 2 * DAY - 600);
    assert_eq!(served.len(), 24);
    assert!(
        served
            .windows(2)
            .all(|w| w[0].valid_until_utime >= w[1].valid_until_utime),
        "newest first"
    );
}

#[test]
fn next_tick_names_the_next_rotation_or_expiry() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    assert_eq!(core.next_tick(T0), T0, "no key: now");
    tick(&mut core, T0, &mut seeds());
    assert_eq!(core.next_tick(T0 + 5), T0 + HOUR);
    // Nothing to do until then, and something at that moment.
    assert!(!core.poll_new_key(T0 + HOUR - 1));
    assert!(core.poll_new_key(T0 + HOUR));
}

#[test]
fn keys_from_disk_are_kept_and_served_after_a_restart() {
    let mut first = KeyManagerCore::new(rules(false), Vec::new());
    let mut next = seeds();
    for h in 0..3 {
        tick(&mut first, T0 + h * HOUR, &mut next);
    }
    let stored: Vec<NetworkKey> = first.keys().to_vec();
    // Restart 10 minutes after the last key: nothing new is due, the same keys are served.
    let mut again = KeyManagerCore::new(rules(false), stored.into_iter().rev().collect());
    let now = T0 + 2 * HOUR + 600;
    let t = again.tick(now, || panic!("no key is due"));
    assert!(!t.changed());
    assert_eq!(again.served_keys(now), first.served_keys(now));
}

#[test]
fn a_restart_after_a_long_stop_drops_stale_keys_and_makes_a_fresh_one() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    tick(&mut core, T0, &mut seeds());
    let stored = core.keys().to_vec();
    let mut again = KeyManagerCore::new(rules(false), stored);
    let later = T0 + 3 * DAY;
    let t = again.tick(later, || SecretSeed::from_bytes([9; 32]));
    assert_eq!(t.dropped.len(), 1);
    assert_eq!(t.added.expect("fresh key").valid_until, later + DAY);
    assert_eq!(again.keys().len(), 1);
}

#[test]
fn a_clock_that_went_back_does_not_flood_keys() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    tick(&mut core, T0, &mut seeds());
    // An hour back: the key is "from the future" but valid long enough.
    assert!(!core.poll_new_key(T0 - HOUR));
    // A key about to expire is not enough, wherever its creation time lies.
    let mut short = KeyManagerCore::new(
        rules(false),
        vec![NetworkKey::new(SecretSeed::from_bytes([5; 32]), T0, 60)],
    );
    assert!(short.poll_new_key(T0 + 1));
    assert!(short
        .tick(T0 + 1, || SecretSeed::from_bytes([6; 32]))
        .changed());
}

#[test]
fn duplicate_keys_from_disk_are_kept_once() {
    let k = NetworkKey::new(SecretSeed::from_bytes([3; 32]), T0, DAY);
    let core = KeyManagerCore::new(rules(false), vec![k.clone(), k]);
    assert_eq!(core.keys().len(), 1);
}

#[test]
fn the_test_key_is_served_last_only_when_configured_and_never_announced() {
    let mut core = KeyManagerCore::new(rules(true), Vec::new());
    tick(&mut core, T0, &mut seeds());
    let served = core.served_keys(T0);
    assert_eq!(served.len(), 2);
    let last = served.last().expect("test key");
    assert_eq!(last.private_key, TEST_KEY_SEED);
    assert_eq!(last.valid_until_utime, 2_000_000_000);
    let public = core.public_keys(T0);
    assert!(public.last().expect("test key").test);
    assert_eq!(public.last().expect("test key").public, TEST_KEY_PUBLIC);
    let due = core.poll_announce(T0, &[]);
    assert_eq!(due.len(), 1);
    assert_ne!(due[0].public, TEST_KEY_PUBLIC);
    // Past its expiry it is gone.
    assert!(core
        .served_keys(TEST_KEY_VALID_UNTIL)
        .iter()
        .all(|k| k.private_key != TEST_KEY_SEED));
    let off = KeyManagerCore::new(rules(false), Vec::new());
    assert!(off.served_keys(T0).is_empty());
}

#[test]
fn announcements_go_out_until_the_root_lists_the_key() {
    let mut core = KeyManagerCore::new(rules(false), Vec::new());
    let mut next = seeds();
    tick(&mut core, T0, &mut next);
    let due = core.poll_announce(T0, &[]);
    assert_eq!(due.len(), 1);
    let a = &due[0];
    assert_eq!(a.key_type, 1);
    assert_eq!(u64::from(a.expire_at), T0 + DAY);
    core.handle_announce_attempt(a.public, T0);
    // Not again while the root may still be applying it...
    assert!(core.poll_announce(T0 + 59, &[]).is_empty());
    // ...but again once `announce_retry` passed without the root listing it.
    assert_eq!(core.poll_announce(T0 + 60, &[]).len(), 1);
    // Listed: done for good.
    assert!(core.poll_announce(T0 + 600, &[a.public]).is_empty());
    // The next key is announced on its own.
    tick(&mut core, T0 + HOUR, &mut next);
    let due = core.poll_announce(T0 + HOUR, &[a.public]);
    assert_eq!(due.len(), 1);
    assert_ne!(due[0].public, a.public);
    // Expired keys are never announced.
    assert!(core.poll_announce(T0 + 3 * DAY, &[]).is_empty());
}

#[test]
fn debug_output_never_shows_a_seed() {
    let k = NetworkKey::new(SecretSeed::from_bytes([0xab; 32]), T0, DAY);
    let core = KeyManagerCore::new(rules(true), vec![k]);
    let shown = format!("{core:?}");
    assert!(!shown.contains(&hex::encode([0xab; 32])), "{shown}");
    assert!(!shown.contains("171, 171"), "{shown}");
}
