//! Scopes: the permissions methods require and access roles grant. The
//! gateway enforces them per method (its policy); a role checks them where
//! what a caller may see depends on more than the method (an alert rule's
//! annotations may quote only fields its author may read).

use crate::principal::{AccessRole, Principal};

/// A permission a method requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    ContactsRead,
    ContactsWrite,
    /// Right-to-be-forgotten erasure: irreversible, so admin only.
    ContactsErase,
    InteractionsRead,
    InteractionsWrite,
    /// Bulk ingest from billing and accounting.
    InteractionsIngest,
    SegmentsRead,
    SegmentsWrite,
    AlertsRead,
    AlertsWrite,
    /// API keys and the gateway's own feed.
    GatewayAdmin,
    /// Any authenticated caller: what it needs only to know who it is
    /// (`GatewayAdminService/GetCaller`).
    Authenticated,
}

impl Scope {
    /// The scopes a role can be granted (`Authenticated` is every caller's).
    pub const ALL: [Scope; 11] = [
        Scope::ContactsRead,
        Scope::ContactsWrite,
        Scope::ContactsErase,
        Scope::InteractionsRead,
        Scope::InteractionsWrite,
        Scope::InteractionsIngest,
        Scope::SegmentsRead,
        Scope::SegmentsWrite,
        Scope::AlertsRead,
        Scope::AlertsWrite,
        Scope::GatewayAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ContactsRead => "contacts.read",
            Scope::ContactsWrite => "contacts.write",
            Scope::ContactsErase => "contacts.erase",
            Scope::InteractionsRead => "interactions.read",
            Scope::InteractionsWrite => "interactions.write",
            Scope::InteractionsIngest => "interactions.ingest",
            Scope::SegmentsRead => "segments.read",
            Scope::SegmentsWrite => "segments.write",
            Scope::AlertsRead => "alerts.read",
            Scope::AlertsWrite => "alerts.write",
            Scope::GatewayAdmin => "gateway.admin",
            Scope::Authenticated => "authenticated",
        }
    }
}

/// The scopes each access role grants.
pub fn scopes_of(role: AccessRole) -> &'static [Scope] {
    use Scope::*;
    match role {
        AccessRole::Admin => &Scope::ALL,
        AccessRole::Agent => {
            &[ContactsRead, ContactsWrite, InteractionsRead, InteractionsWrite, SegmentsRead, AlertsRead]
        }
        AccessRole::Integration => {
            &[ContactsRead, ContactsWrite, InteractionsRead, InteractionsWrite, InteractionsIngest]
        }
        AccessRole::Analyst => &[ContactsRead, InteractionsRead, SegmentsRead, SegmentsWrite, AlertsRead],
        AccessRole::Sre => &[AlertsRead, AlertsWrite],
    }
}

/// Whether any of the principal's roles grants `scope`.
pub fn allows(principal: &Principal, scope: Scope) -> bool {
    scope == Scope::Authenticated || principal.roles.iter().any(|role| scopes_of(*role).contains(&scope))
}
