//! Generated Rust for the CRM contracts in `proto/crm/<area>/v1/`.
//!
//! - [`common`]: shared value types (money, external ids).
//! - [`events`]: the domain-event envelope and the feed requests every role serves.
//! - [`contacts`], [`interactions`], [`segmentation`], [`alerting`], [`gateway`]:
//!   one gRPC service per role, with its client and server.
//! - [`FILE_DESCRIPTOR_SET`]: every contract, encoded, for server reflection and
//!   for tests that walk every method.

#![allow(clippy::all, clippy::pedantic)]

/// Every compiled contract (with its imports), as an encoded `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/crm_descriptor.bin"));

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
