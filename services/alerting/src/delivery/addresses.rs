//! Where webhooks may go (SSRF): a webhook's host must not be, or resolve
//! to, a loopback, link-local (where clouds serve instance metadata and
//! credentials), multicast, broadcast or unspecified address, nor a known
//! cloud metadata address, unless the install allows that network
//! (`CRM_WEBHOOK_ALLOWED_NETWORKS`). Private networks are allowed: internal
//! receivers live there. The check runs when a webhook is made and again
//! at every attempt, inside the HTTP client's resolver, so a name that
//! later resolves elsewhere (DNS rebinding) is refused too; redirects are
//! not followed.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// Addresses of cloud instance metadata outside the link-local range.
const METADATA: [IpAddr; 2] = [
    // Alibaba Cloud
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // AWS over IPv6
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// Which addresses webhooks may reach.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> AddressPolicy {
        AddressPolicy { allowed }
    }

    /// Why `ip` is refused, or `None` when it may be reached.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allowed.iter().any(|network| network.contains(&ip)) {
            return None;
        }
        if METADATA.contains(&ip) {
            return Some("a cloud metadata address");
        }
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
            IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address (cloud metadata lives there)"),
            IpAddr::V4(v4) if v4.is_unspecified() => Some("the unspecified address"),
            IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Some("a multicast or broadcast address"),
            IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
            IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address (cloud metadata lives there)"),
            IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address"),
            IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
            _ => None,
        }
    }

    /// Checks a webhook URL: http(s), a host, and every address the host
    /// resolves to may be reached. The error says what is wrong.
    pub async fn check_url(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|error| format!("is not a URL ({error})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("must be http or https (got {})", parsed.scheme()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry credentials: the signature authenticates the suite".into());
        }
        let Some(host) = parsed.host_str() else { return Err("has no host".into()) };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addresses = match literal(host) {
            Some(ip) => vec![ip],
            None => tokio::net::lookup_host((host, port))
                .await
                .map_err(|error| format!("host {host} does not resolve ({error})"))?
                .map(|address| address.ip())
                .collect(),
        };
        if let Some((ip, reason)) = addresses.iter().find_map(|ip| self.refuses(*ip).map(|reason| (ip, reason))) {
            return Err(format!(
                "{host} is {ip}, {reason}; allow its network with CRM_WEBHOOK_ALLOWED_NETWORKS if it is meant"
            ));
        }
        Ok(parsed)
    }

    /// The resolver the webhook client uses: names resolve as usual, and
    /// refused addresses are dropped (none left: the attempt fails).
    pub fn resolver(&self) -> Arc<PolicyResolver> {
        Arc::new(PolicyResolver { policy: self.clone() })
    }
}

/// An IP address written as a URL host (IPv6 in brackets).
pub fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

pub struct PolicyResolver {
    policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|address| policy.refuses(address.ip()).is_none()).collect();
            if allowed.is_empty() {
                let reason = found.first().and_then(|address| policy.refuses(address.ip())).unwrap_or("nothing");
                return Err(format!("{host} resolves only to refused addresses ({reason})").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_loopback_and_link_local_are_refused_unless_allowed() {
        let policy = AddressPolicy::default();
        for refused in
            ["169.254.169.254", "127.0.0.1", "::1", "fe80::1", "0.0.0.0", "100.100.100.200", "::ffff:127.0.0.1"]
        {
            assert!(policy.refuses(refused.parse().unwrap()).is_some(), "{refused}");
        }
        for reached in ["10.0.0.5", "192.168.1.20", "93.184.216.34", "2606:4700::1"] {
            assert_eq!(policy.refuses(reached.parse().unwrap()), None, "{reached}");
        }
        let allowed = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(allowed.refuses("127.0.0.1".parse().unwrap()), None);
        assert!(allowed.refuses("169.254.169.254".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn a_url_is_checked_for_scheme_credentials_and_address() {
        let policy = AddressPolicy::default();
        assert!(policy.check_url("ftp://example.com/x").await.unwrap_err().contains("http or https"));
        assert!(policy.check_url("http://user:pw@10.0.0.1/").await.unwrap_err().contains("credentials"));
        let metadata = policy.check_url("http://169.254.169.254/latest/meta-data/").await.unwrap_err();
        assert!(metadata.contains("link-local"), "{metadata}");
        assert!(policy.check_url("http://[::1]:9000/hook").await.unwrap_err().contains("loopback"));
        assert!(policy.check_url("http://localhost:9000/hook").await.is_err());
        assert!(policy.check_url("https://10.1.2.3/hook").await.is_ok());
    }
}
