//! Machine opens and clicks: real user agents of bots, mail clients and Apple's privacy
//! proxy, configured patterns, and click bursts.

use std::net::IpAddr;

use clarion_kpi::machine::{MachineFilter, MachineReason, MachineSettings, burst};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const IPHONE_MAIL: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
const GMAIL_PROXY: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const CURL: &str = "curl/8.5.0";

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn user_agents_of_bots_and_people() {
    let filter = MachineFilter::new(&MachineSettings::default()).unwrap();
    for person in [CHROME, IPHONE_MAIL, GMAIL_PROXY] {
        assert_eq!(
            filter.classify_open(Some(person), ip("203.0.113.9")),
            None,
            "{person}"
        );
        assert_eq!(filter.classify_click(Some(person)), None, "{person}");
    }
    for bot in [GOOGLEBOT, CURL] {
        assert_eq!(
            filter.classify_open(Some(bot), ip("203.0.113.9")),
            Some(MachineReason::BotUserAgent),
            "{bot}"
        );
        assert_eq!(
            filter.classify_click(Some(bot)),
            Some(MachineReason::BotUserAgent),
            "{bot}"
        );
    }
    assert_eq!(
        filter.classify_click(None),
        Some(MachineReason::BotUserAgent)
    );
    assert_eq!(
        filter.classify_click(Some("  ")),
        Some(MachineReason::BotUserAgent)
    );
}

#[test]
fn apple_privacy_proxy_opens_are_machine_opens() {
    let filter = MachineFilter::new(&MachineSettings::default()).unwrap();
    assert_eq!(
        filter.classify_open(Some("Mozilla/5.0"), ip("198.51.100.4")),
        Some(MachineReason::PrivacyProxy)
    );
    assert_eq!(
        filter.classify_open(Some(IPHONE_MAIL), ip("17.58.100.1")),
        Some(MachineReason::PrivacyProxy)
    );
    assert_eq!(
        filter.classify_open(Some(IPHONE_MAIL), ip("::ffff:17.1.2.3")),
        Some(MachineReason::PrivacyProxy)
    );
    assert_eq!(
        filter.classify_open(Some(IPHONE_MAIL), ip("18.58.100.1")),
        None
    );
}

#[test]
fn configured_patterns_are_literal_and_checked() {
    let settings = MachineSettings {
        bot_patterns: vec!["URLDefense".into(), "a+b(".into()],
        ..MachineSettings::default()
    };
    let filter = MachineFilter::new(&settings).unwrap();
    assert_eq!(
        filter.classify_click(Some("Mozilla/5.0 (urldefense.proofpoint.com)")),
        Some(MachineReason::BotUserAgent)
    );
    assert_eq!(
        filter.classify_click(Some("x a+b( y")),
        Some(MachineReason::BotUserAgent)
    );
    assert_eq!(
        filter.classify_click(Some("aab")),
        None,
        "a pattern is not a regular expression"
    );
    assert_eq!(filter.classify_click(Some(CHROME)), None);
    let empty = MachineSettings {
        bot_patterns: vec![" ".into()],
        ..MachineSettings::default()
    };
    assert!(
        MachineFilter::new(&empty)
            .unwrap_err()
            .to_string()
            .contains("bot_patterns[0]")
    );
    let one = MachineSettings {
        burst_links: 1,
        ..MachineSettings::default()
    };
    assert!(
        MachineFilter::new(&one)
            .unwrap_err()
            .to_string()
            .contains("burst_links")
    );
}

#[test]
fn bursts_need_different_links_close_together() {
    let clicks = |list: &[(i64, &str)]| -> Vec<(i64, String)> {
        list.iter().map(|(t, u)| (*t, u.to_string())).collect()
    };
    // A scanner: three links within 300 ms.
    let scanner = clicks(&[
        (1_000, "https://a"),
        (1_150, "https://b"),
        (1_300, "https://c"),
    ]);
    assert!(burst(1_300, &scanner, 2_000, 2));
    assert!(!burst(1_300, &scanner, 2_000, 4));
    // A person clicking the same link twice, then another one a minute later.
    let person = clicks(&[
        (1_000, "https://a"),
        (1_500, "https://a"),
        (61_500, "https://b"),
    ]);
    assert!(!burst(1_500, &person, 2_000, 2));
    assert!(!burst(61_500, &person, 2_000, 2));
    // Exactly on the window's edge counts; one millisecond beyond does not.
    let edge = clicks(&[(0, "https://a"), (2_000, "https://b")]);
    assert!(burst(2_000, &edge, 2_000, 2));
    assert!(!burst(
        2_001,
        &clicks(&[(0, "https://a"), (2_001, "https://b")]),
        2_000,
        2
    ));
}
