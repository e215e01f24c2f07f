//! Generated Rust for the CRM contracts in `proto/crm/<area>/v1/`.
//!
//! - [`common`]: shared value types (money, external ids).
//! - [`events`]: the domain-event envelope and the feed requests every role serves.
//! - [`contacts`], [`interactions`], [`segmentation`], [`alerting`], [`gateway`]:
//!   one gRPC service per role, with its client and server.
//! - [`codec`]: the codec every service is generated with (prost's, refusing text PostgreSQL cannot store).
//! - [`storable`]: finds such text (NUL) in a message's encoded bytes, by the contracts' descriptors.
//! - [`FILE_DESCRIPTOR_SET`]: every contract, encoded, for server reflection and
//!   for tests that walk every method.

#![allow(clippy::all, clippy::pedantic)]

/// Every compiled contract (with its imports), as an encoded `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crm_descriptor.bin"));

pub mod codec;
pub mod storable;

pub mod common {
    pub mod v1 {
        tonic::include_proto!("crm.common.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("crm.events.v1");
    }
}

pub mod contacts {
    pub mod v1 {
        tonic::include_proto!("crm.contacts.v1");
    }
}

pub mod interactions {
    pub mod v1 {
        tonic::include_proto!("crm.interactions.v1");
    }
}

pub mod segmentation {
    pub mod v1 {
        tonic::include_proto!("crm.segmentation.v1");
    }
}

pub mod alerting {
    pub mod v1 {
        tonic::include_proto!("crm.alerting.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("crm.gateway.v1");
    }
}

/// A gRPC service of the suite, read from [`FILE_DESCRIPTOR_SET`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Protobuf package, e.g. `crm.contacts.v1`.
    pub package: String,
    /// Full service name, e.g. `crm.contacts.v1.ContactsService`.
    pub name: String,
    pub methods: Vec<MethodInfo>,
}

/// One method of a [`ServiceInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// e.g. `Subscribe`.
    pub name: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

impl ServiceInfo {
    /// The gRPC path of `method`: `/crm.contacts.v1.ContactsService/Subscribe`.
    pub fn path(&self, method: &MethodInfo) -> String {
        format!("/{}/{}", self.name, method.name)
    }
}

/// Every service of the suite's own contracts (package `crm.*`).
pub fn services() -> Vec<ServiceInfo> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    set.file
        .iter()
        .filter(|file| file.package().starts_with("crm."))
        .flat_map(|file| {
            file.service.iter().map(move |service| ServiceInfo {
                package: file.package().to_string(),
                name: format!("{}.{}", file.package(), service.name()),
                methods: service
                    .method
                    .iter()
                    .map(|method| MethodInfo {
                        name: method.name().to_string(),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    })
                    .collect(),
            })
        })
        .collect()
}
