//! Generated gRPC types for every service, and the descriptor set that
//! gRPC reflection serves.

pub mod common {
    pub mod v1 {
        tonic::include_proto!("hpki.common.v1");
    }
}

// The shared types are re-exported under the service packages that used to
// define them, so callers keep one short path per service (`reg::`, `rev::`).
pub mod registry {
    pub mod v1 {
        tonic::include_proto!("hpki.registry.v1");
        pub use crate::common::v1::RevocationReason;
    }
}

pub mod issuance {
    pub mod v1 {
        tonic::include_proto!("hpki.issuance.v1");
        pub use crate::common::v1::{ConfirmationMethod, IdentityConfirmation};
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
        pub use crate::common::v1::{ConfirmationMethod, IdentityConfirmation, RevocationReason};
    }
}

/// The proto's `RevocationReason` and the domain's carry the same RFC 5280
/// codes; these two conversions are the only mapping between them. A raw
/// `i32` from the wire converts with `domain::RevocationReason::try_from`.
mod reason {
    use super::common::v1::RevocationReason as Pb;
    use domain::RevocationReason as D;

    impl From<D> for Pb {
        fn from(r: D) -> Pb {
            match r {
                D::Unspecified => Pb::Unspecified,
                D::KeyCompromise => Pb::KeyCompromise,
                D::CaCompromise => Pb::CaCompromise,
                D::AffiliationChanged => Pb::AffiliationChanged,
                D::Superseded => Pb::Superseded,
                D::CessationOfOperation => Pb::CessationOfOperation,
                D::PrivilegeWithdrawn => Pb::PrivilegeWithdrawn,
            }
        }
    }

    impl From<Pb> for D {
        fn from(r: Pb) -> D {
            match r {
                Pb::Unspecified => D::Unspecified,
                Pb::KeyCompromise => D::KeyCompromise,
                Pb::CaCompromise => D::CaCompromise,
                Pb::AffiliationChanged => D::AffiliationChanged,
                Pb::Superseded => D::Superseded,
                Pb::CessationOfOperation => D::CessationOfOperation,
                Pb::PrivilegeWithdrawn => D::PrivilegeWithdrawn,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_numbers_are_the_rfc_5280_codes() {
            for r in D::ALL {
                let pb = Pb::from(r);
                assert_eq!(pb as i32, i32::from(r.code()), "{r}");
                assert_eq!(D::from(pb), r);
                assert_eq!(D::try_from(pb as i32), Ok(r));
            }
            for code in 0..=20 {
                assert_eq!(Pb::try_from(code).is_ok(), D::try_from(code).is_ok(), "{code}");
            }
        }
    }
}

/// The proto's `ConfirmationMethod` and `IdentityConfirmation` and the
/// domain's. The proto's UNSPECIFIED (and any unknown number) is no method:
/// `domain::ConfirmationMethod::try_from(i32)` refuses it with the number, and
/// the services answer INVALID_ARGUMENT `confirmation.method`.
mod confirmation {
    use super::common::v1::{ConfirmationMethod as Pb, IdentityConfirmation as PbConfirmation};
    use domain::{ConfirmationMethod as D, IdentityConfirmation};

    impl From<D> for Pb {
        fn from(m: D) -> Pb {
            match m {
                D::Phone => Pb::Phone,
                D::WrittenReport => Pb::WrittenReport,
                D::InPerson => Pb::InPerson,
            }
        }
    }

    impl From<IdentityConfirmation> for PbConfirmation {
        fn from(c: IdentityConfirmation) -> PbConfirmation {
            PbConfirmation {
                confirmed_by: c.confirmed_by,
                method: Pb::from(c.method) as i32,
                confirmed_at: c.confirmed_at,
                note: c.note,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_numbers_and_names_are_the_domains() {
            for m in D::ALL {
                let pb = Pb::from(m);
                assert_eq!(pb as i32, m.code(), "{m}");
                assert_eq!(pb.as_str_name(), m.name());
                assert_eq!(D::try_from(pb as i32), Ok(m));
            }
            assert_eq!(D::try_from(Pb::Unspecified as i32), Err(0));
        }
    }
}

/// Encoded `FileDescriptorSet` of all our protos, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// gRPC server reflection in both protocol versions: v1, and v1alpha, which grpcurl
/// up to 1.8 still asks for. Each server lists only what it serves: its own service
/// (e.g. `issuance_server::SERVICE_NAME`), grpc.health.v1 and reflection itself; the
/// descriptors of all our protos stay available for describing their messages.
pub mod reflection {
    use tonic_reflection::server::{v1, v1alpha, Builder, Error};

    const HEALTH: &str = "grpc.health.v1.Health";

    fn builder(service: &str) -> Builder<'static> {
        Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name(HEALTH)
    }

    pub fn v1(service: &str) -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, Error> {
        builder(service).build_v1()
    }

    pub fn v1alpha(service: &str) -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, Error> {
        builder(service).build_v1alpha()
    }
}
