//! The roles of the suite, by name. One `crm` binary runs any of them.

use std::{fmt, str::FromStr};

/// One role of the suite. `--target all` expands to [`Role::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    Contacts,
    Interactions,
    Segmentation,
    Alerting,
}

impl Role {
    /// Every role, in start-up order: the domain roles first, the gateway last
    /// (so that it never routes to a role that is not listening yet).
    pub const ALL: [Role; 5] = [Role::Contacts, Role::Interactions, Role::Segmentation, Role::Alerting, Role::Gateway];

    /// The domain roles, which the gateway routes to.
    pub const DOMAIN: [Role; 4] = [Role::Contacts, Role::Interactions, Role::Segmentation, Role::Alerting];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Contacts => "contacts",
            Role::Interactions => "interactions",
            Role::Segmentation => "segmentation",
            Role::Alerting => "alerting",
        }
    }

    /// The PostgreSQL schema this role owns; no other role touches it.
    pub fn schema(self) -> &'static str {
        self.as_str()
    }

    /// Prefix of the environment variables that configure this role, e.g. `CRM_CONTACTS`.
    pub fn env_prefix(self) -> String {
        format!("CRM_{}", self.as_str().to_ascii_uppercase())
    }

    /// The default listen port of this role.
    pub fn default_port(self) -> u16 {
        match self {
            Role::Gateway => 50051,
            Role::Contacts => 50061,
            Role::Interactions => 50062,
            Role::Segmentation => 50063,
            Role::Alerting => 50064,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str() == name).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            format!("unknown role {name:?}; expected one of {}", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        let error = "billing".parse::<Role>().unwrap_err();
        assert!(error.contains("contacts, interactions"), "{error}");
    }
}
