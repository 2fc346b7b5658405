//! Generated gRPC types for every service, and the descriptor set that
//! gRPC reflection serves.

pub mod registry {
    pub mod v1 {
        tonic::include_proto!("hpki.registry.v1");
    }
}

pub mod issuance {
    pub mod v1 {
        tonic::include_proto!("hpki.issuance.v1");
    }
}

pub mod crl {
    pub mod v1 {
        tonic::include_proto!("hpki.crl.v1");
    }
}

pub mod revocation {
    pub mod v1 {
        tonic::include_proto!("hpki.revocation.v1");
    }
}

/// Encoded `FileDescriptorSet` of all our protos, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
