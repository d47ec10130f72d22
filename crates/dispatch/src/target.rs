//! Which webhook targets Clarion may connect to.
//!
//! Webhook URLs come from users, so without rules a URL could make the server reach into its
//! own network (cloud metadata at 169.254.169.254, an admin port on 127.0.0.1, a database on
//! 10.0.0.5). Every address a host name resolves to is checked, and the HTTP client connects
//! only to the addresses that passed: the check and the connection use the same DNS answer, so
//! a rebinding DNS server cannot swap in a forbidden address in between.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which non-public address ranges webhook targets may use. Public unicast addresses are always
/// allowed; multicast, broadcast and reserved addresses never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Allow 127.0.0.0/8, ::1 and the unspecified addresses (0.0.0.0, ::), which reach this
    /// host. For tests and single-machine setups.
    pub allow_loopback: bool,
    /// Allow private networks: 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT) and
    /// fc00::/7 (unique local).
    pub allow_private: bool,
    /// Allow link-local 169.254/16 and fe80::/10, where cloud metadata services live.
    pub allow_link_local: bool,
}

/// A target address refused by the [`TargetPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedTarget {
    /// What was refused and why, e.g. `127.0.0.1 is a loopback address`.
    pub reason: String,
}

impl fmt::Display for BlockedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook target refused: {}", self.reason)
    }
}

impl StdError for BlockedTarget {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Public,
    Loopback,
    Private,
    LinkLocal,
    NeverUnicast,
}

impl TargetPolicy {
    /// Allows everything a test on 127.0.0.1 needs and nothing more.
    pub fn loopback_only() -> Self {
        Self {
            allow_loopback: true,
            ..Self::default()
        }
    }

    /// Accepts or refuses one address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), BlockedTarget> {
        let refused = |what: &str, setting: Option<&str>| {
            let hint = setting
                .map(|setting| format!(" (set `webhook.{setting}` to allow it)"))
                .unwrap_or_default();
            Err(BlockedTarget {
                reason: format!("{ip} is {what}{hint}"),
            })
        };
        match range_of(ip) {
            Range::Public => Ok(()),
            Range::Loopback if self.allow_loopback => Ok(()),
            Range::Private if self.allow_private => Ok(()),
            Range::LinkLocal if self.allow_link_local => Ok(()),
            Range::Loopback => refused("a loopback address", Some("allow_loopback")),
            Range::Private => refused("a private address", Some("allow_private")),
            Range::LinkLocal => refused("a link-local address", Some("allow_link_local")),
            Range::NeverUnicast => refused("not a unicast address", None),
        }
    }
}

fn range_of(ip: IpAddr) -> Range {
    match ip {
        IpAddr::V4(v4) => range_of_v4(v4),
        IpAddr::V6(v6) => range_of_v6(v6),
    }
}

fn range_of_v4(ip: Ipv4Addr) -> Range {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() || a == 0 {
        // 0.0.0.0/8 means "this host" and reaches local services on Linux.
        Range::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Range::Private
    } else if ip.is_link_local() {
        Range::LinkLocal
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Range::NeverUnicast
    } else {
        Range::Public
    }
}

fn range_of_v6(ip: Ipv6Addr) -> Range {
    // IPv4 carried in IPv6 (::ffff:a.b.c.d, and the NAT64 prefix 64:ff9b::/96) reaches the
    // embedded IPv4 address, so it gets that address's rules.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return range_of_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        let embedded = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return range_of_v4(embedded);
    }
    if ip.is_loopback() || ip.is_unspecified() {
        Range::Loopback
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Range::Private
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Range::LinkLocal
    } else if ip.is_multicast() {
        Range::NeverUnicast
    } else {
        Range::Public
    }
}

/// The DNS resolver of the webhook client: resolves with the system resolver and refuses the
/// whole name when any of its addresses breaks the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addrs = resolve_checked(name.as_str(), 0, policy).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Resolves `host` and checks every address; refusing the whole name when one address is
/// forbidden keeps an attacker from mixing a public and a private answer.
pub(crate) async fn resolve_checked(
    host: &str,
    port: u16,
    policy: TargetPolicy,
) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    for addr in &addrs {
        policy
            .check_ip(addr.ip())
            .map_err(|blocked| BlockedTarget {
                reason: format!("{host} resolves to {}", blocked.reason),
            })?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: TargetPolicy, ip: &str) -> bool {
        policy.check_ip(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn default_policy_allows_only_public_unicast() {
        let policy = TargetPolicy::default();
        for ip in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert!(!refused(policy, ip), "{ip} should be allowed");
        }
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "::1",
            "::",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
            "ff02::1",
        ] {
            assert!(refused(policy, ip), "{ip} should be refused");
        }
    }

    #[test]
    fn each_flag_opens_only_its_range() {
        let loopback = TargetPolicy::loopback_only();
        assert!(!refused(loopback, "127.0.0.1"));
        assert!(!refused(loopback, "::1"));
        assert!(refused(loopback, "10.0.0.1"));
        assert!(refused(loopback, "169.254.169.254"));

        let private = TargetPolicy {
            allow_private: true,
            ..TargetPolicy::default()
        };
        assert!(!refused(private, "192.168.0.10"));
        assert!(!refused(private, "fd12::1"));
        assert!(refused(private, "127.0.0.1"));

        let link_local = TargetPolicy {
            allow_link_local: true,
            ..TargetPolicy::default()
        };
        assert!(!refused(link_local, "169.254.169.254"));
        assert!(refused(link_local, "10.0.0.1"));
    }

    #[test]
    fn refusal_names_the_setting_that_would_allow_it() {
        let error = TargetPolicy::default()
            .check_ip("127.0.0.1".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            error.reason,
            "127.0.0.1 is a loopback address (set `webhook.allow_loopback` to allow it)"
        );
    }
}
