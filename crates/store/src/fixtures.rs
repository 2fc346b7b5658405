//! Records for tests, the store's own and other crates' (feature `testing`).

use crate::records::{ContactAddress, HolderDetails, Membership, NewApplication};

/// A complete application of one physician (the same person each time, but
/// for `licence_number`), requested by "ra-test".
pub fn application(application_id: &str, licence_number: &str) -> NewApplication {
    NewApplication {
        application_id: application_id.into(),
        holder_id: String::new(),
        holder: HolderDetails {
            family_name_kanji: "医師".into(),
            given_name_kanji: "太郎".into(),
            family_name_kana: "イシ".into(),
            given_name_kana: "タロウ".into(),
            family_name_latin: "ISHI".into(),
            given_name_latin: "TARO".into(),
            date_of_birth: "1980-04-01".into(),
            licence_number: licence_number.into(),
            licence_registered_on: "2006-05-01".into(),
            membership: Membership::Member,
            contact: ContactAddress {
                postal_code: "113-8621".into(),
                address: "東京都文京区本駒込2-28-16".into(),
                phone: "03-3946-2121".into(),
                email: "taro@example.jp".into(),
            },
            institution: String::new(),
            institution_kanji: String::new(),
        },
        application_json: r#"{"documents":["licence"]}"#.into(),
        actor: "ra-test".into(),
        keys: Vec::new(),
    }
}
