//! The calls a benchmark mix is made of. The full mix (create, get
//! and look up contacts, a timeline page, record an interaction) is added
//! here as those methods land; `list_events` is the unary read every role has.

use std::fmt;

use crm_proto::{contacts::v1::contacts_service_client::ContactsServiceClient, events::v1::ListEventsRequest};
use tonic::Code;

use super::transport::Transport;

/// One kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `ContactsService/ListEvents`: one page of the contacts feed.
    ListEvents,
}

impl Operation {
    pub const ALL: [Operation; 1] = [Operation::ListEvents];

    pub fn name(self) -> &'static str {
        match self {
            Operation::ListEvents => "list_events",
        }
    }

    /// Makes one call; `Err` carries the gRPC code.
    pub async fn call(self, transport: &Transport) -> Result<(), Code> {
        match self {
            Operation::ListEvents => {
                let mut contacts = ContactsServiceClient::new(transport.clone());
                let request = ListEventsRequest { page_size: 10, ..Default::default() };
                contacts.list_events(request).await.map(|_| ()).map_err(|status| status.code())
            }
        }
    }
}

/// Operations with weights: `list_events=3,get_contact=1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(pub Vec<(Operation, u32)>);

impl Mix {
    /// The operation for draw `n` (any number): weights decide how often each comes.
    pub fn pick(&self, n: u64) -> Operation {
        let total: u64 = self.0.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut point = n % total.max(1);
        for (operation, weight) in &self.0 {
            if point < u64::from(*weight) {
                return *operation;
            }
            point -= u64::from(*weight);
        }
        self.0[0].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(op, weight)| format!("{}={weight}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses `--mix`.
pub fn parse_mix(value: &str) -> Result<Mix, String> {
    let mut mix = Vec::new();
    for part in value.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let operation = Operation::ALL.into_iter().find(|op| op.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Operation::ALL.iter().map(|op| op.name()).collect();
            format!("unknown operation {name:?}; known: {}", known.join(", "))
        })?;
        let weight: u32 = weight.parse().map_err(|_| format!("the weight of {name} must be a whole number"))?;
        if weight > 0 {
            mix.push((operation, weight));
        }
    }
    if mix.is_empty() {
        return Err("the mix needs at least one operation with a weight above 0".into());
    }
    Ok(Mix(mix))
}
