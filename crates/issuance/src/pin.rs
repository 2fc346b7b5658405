//! Card PIN escrow and disclosure. The PIN is encrypted under an AES key that
//! never leaves the HSM (AES-GCM, the card id as associated data); the registry
//! stores only the ciphertext. The PIN never appears in logs, errors or audit.

use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;
use rand::Rng;

use crate::error::IssuanceError;
use crate::service::{actor, invalid, IssuanceService};
use crate::validate;

/// A PIN held only as long as needed; Debug never shows it.
pub(crate) struct Pin(String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Best effort: overwrite the digits before the memory is freed.
        let zeros = "0".repeat(self.0.len());
        self.0.replace_range(.., &zeros);
    }
}

#[derive(Debug)]
pub(crate) enum PinChoice {
    Given(Pin),
    Generate,
}

impl PinChoice {
    /// 4 to 16 digits, or empty for "generate one". The value is never echoed.
    pub(crate) fn from_request(field: &str, pin: &str) -> Result<PinChoice, IssuanceError> {
        if pin.is_empty() {
            return Ok(PinChoice::Generate);
        }
        if !(4..=16).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(field, "must be 4 to 16 digits (or empty to have one generated)"));
        }
        Ok(PinChoice::Given(Pin(pin.to_owned())))
    }
}

fn generate(digits: u32) -> Pin {
    let mut rng = rand::rngs::OsRng;
    Pin((0..digits.clamp(4, 16)).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect())
}

impl IssuanceService {
    /// Encrypts the card's PIN (given or generated) under the escrow key in the
    /// HSM: the PIN when we generated it, and the escrow request for the
    /// registry (sent with `PrepareCard`, or alone by `store_pin_escrow`).
    pub(crate) async fn encrypt_pin(
        &self,
        card_id: &str,
        choice: PinChoice,
        actor: &str,
    ) -> Result<(Option<Pin>, reg::StorePinEscrowRequest), IssuanceError> {
        let (pin, generated) = match choice {
            PinChoice::Given(p) => (p, false),
            PinChoice::Generate => (generate(self.settings.generated_pin_digits), true),
        };
        let key = self.escrow.clone();
        let aad = card_id.as_bytes().to_vec();
        let plaintext = pin.0.as_bytes().to_vec();
        let (iv, ciphertext) = self.signers.run(move || key.encrypt_gcm(&plaintext, &aad)).await??;
        let request = reg::StorePinEscrowRequest {
            card_id: card_id.to_owned(),
            key_label: self.escrow.label().to_owned(),
            iv: iv.to_vec(),
            ciphertext,
            actor: actor.to_owned(),
        };
        Ok((generated.then_some(pin), request))
    }

    /// Stores the escrow on its own (when there is nothing left to prepare);
    /// whether this call stored it.
    pub(crate) async fn store_pin_escrow(&self, request: reg::StorePinEscrowRequest) -> Result<bool, IssuanceError> {
        match self.registry.clone().store_pin_escrow(request).await {
            Ok(_) => Ok(true),
            // An earlier attempt of the same application escrowed it already.
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(false),
            Err(s) => Err(s.into()),
        }
    }

    /// The generated PIN, returned only by the call that stored its escrow: the
    /// only time it is ever returned at issuance.
    pub(crate) fn pin_to_return(generated: Option<Pin>, stored: bool) -> Option<String> {
        generated.filter(|_| stored).map(|pin| pin.0.clone())
    }

    /// Returns the escrowed PIN once per disclosure request, audited and
    /// rate-limited by the registry: per card, and per RA identity and day,
    /// with the limits of the registry's own configuration.
    pub(crate) async fn disclose(
        &self,
        req: iss::PinDisclosureRequest,
        ra_identity: String,
    ) -> Result<iss::PinDisclosure, IssuanceError> {
        let request_id = validate::required("request_id", &req.request_id)?.to_owned();
        let card_id = validate::required("card_id", &req.card_id)?.to_owned();
        let confirmation = validate::confirmation("confirmation", req.confirmation.as_ref())?;
        // The registry counts a disclosure before handing out the ciphertext, and a
        // request id is good for one disclosure: make sure the HSM can decrypt first,
        // so an outage does not use up the request or the holder's allowance.
        self.hsm_reachable_now().await?;
        let record = self
            .registry
            .clone()
            .disclose_pin_escrow(reg::PinDisclosureRequest {
                card_id: card_id.clone(),
                request_id,
                confirmation_json: serde_json::to_string(&confirmation)?,
                actor: actor(&req.ra_operator),
                ra_identity,
            })
            .await?
            .into_inner();
        if record.key_label != self.escrow.label() {
            return Err(IssuanceError::EscrowKey {
                card_id,
                stored: record.key_label,
                configured: self.escrow.label().to_owned(),
            });
        }
        let key = self.escrow.clone();
        let aad = card_id.as_bytes().to_vec();
        let plaintext = tokio::task::spawn_blocking(move || key.decrypt_gcm(&record.iv, &record.ciphertext, &aad))
            .await
            .map_err(IssuanceError::task("escrow"))??;
        let pin =
            Pin(String::from_utf8(plaintext).map_err(|_| IssuanceError::Internal("escrowed PIN is not text".into()))?);
        tracing::info!(card_id = %card_id, "PIN disclosed");
        Ok(iss::PinDisclosure {
            card_id,
            pin: pin.0.clone(),
            disclosed_at: crate::service::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_rules_never_echo_the_value() {
        for bad in ["123", "12345678901234567", "12a4", "１２３４"] {
            let e = PinChoice::from_request("card_pin", bad).unwrap_err().to_string();
            assert!(e.starts_with("card_pin:") && !e.contains(bad), "{e}");
        }
        assert!(matches!(PinChoice::from_request("card_pin", "").unwrap(), PinChoice::Generate));
        let given = PinChoice::from_request("card_pin", "0042").unwrap();
        assert_eq!(format!("{given:?}"), "Given(Pin(..))");
    }

    #[test]
    fn generated_pins_are_digits_of_the_configured_length() {
        let a = generate(6);
        assert_eq!(a.0.len(), 6);
        assert!(a.0.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(generate(2).0.len(), 4);
        let many: std::collections::HashSet<String> = (0..50).map(|_| generate(8).0.clone()).collect();
        assert!(many.len() > 45, "generated PINs repeat too often");
    }
}
