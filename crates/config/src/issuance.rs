//! `[issuance]`: the issuance service.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuanceConfig {
    pub listen: String,
    /// Prometheus metrics (`/metrics`, plain HTTP); port 0 takes a free one.
    pub metrics_listen: String,
    pub registry_url: String,
    /// Revocation service, for reissue (the old card is revoked first) and cessation.
    pub revocation_url: String,
    /// CRL publisher, asked for a CRL at once after a reissue or cessation revokes a card.
    pub crl_url: String,
    /// Label of the AES key in the HSM that encrypts escrowed card PINs.
    pub pin_escrow_key_label: String,
    /// Digits of a PIN we generate when the RA sends none.
    pub generated_pin_digits: u32,
    /// A renewal is accepted from this many days before the card's expiry.
    pub renewal_window_days: u32,
    /// PIN disclosures allowed per card within `pin_disclosure_window_days`
    /// (0 counts as 1). Read by the registry, which counts them; a request
    /// cannot change it.
    pub pin_disclosures_per_window: u32,
    pub pin_disclosure_window_days: u32,
    /// PIN disclosures one RA identity (its client certificate) may make per
    /// calendar day in Japan (JST), over all cards (0 counts as 1). Read by the
    /// registry, counted durably.
    pub pin_disclosures_per_ra_per_day: u32,
}

impl Default for IssuanceConfig {
    fn default() -> Self {
        IssuanceConfig {
            listen: "127.0.0.1:50052".into(),
            metrics_listen: "127.0.0.1:9104".into(),
            registry_url: "https://127.0.0.1:50051".into(),
            revocation_url: "https://127.0.0.1:50054".into(),
            crl_url: "https://127.0.0.1:50053".into(),
            pin_escrow_key_label: "pin-escrow".into(),
            generated_pin_digits: 6,
            renewal_window_days: 90,
            pin_disclosures_per_window: 3,
            pin_disclosure_window_days: 30,
            pin_disclosures_per_ra_per_day: 20,
        }
    }
}
