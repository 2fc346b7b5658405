//! The brochure's fee table (yen, before tax), as one function.

use proto::issuance::v1::{Fee, Membership};

/// Fees for a card holder with the given membership.
///
/// | | member | non-member |
/// |---|---|---|
/// | first issuance | 0 | 5,000 |
/// | yearly fee, years 1 to 5 | 0 | 6,000 |
/// | renewal after 5 years | 5,000 | 5,000 |
///
/// `due_now` is what a new card costs in its first year: the issuance fee plus
/// the first yearly fee (11,000 for a non-member).
pub fn fee_for(membership: Membership) -> Fee {
    let (issuance_fee, yearly_fee, note) = match membership {
        Membership::Member => (0, 0, "member: issuance and yearly fees waived"),
        _ => (5_000, 6_000, "non-member: issuance fee plus the first yearly fee"),
    };
    Fee {
        issuance_fee,
        yearly_fee,
        renewal_fee: 5_000,
        due_now: issuance_fee + yearly_fee,
        currency: "JPY".into(),
        note: note.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_of_the_brochure_table() {
        let m = fee_for(Membership::Member);
        assert_eq!((m.issuance_fee, m.yearly_fee, m.renewal_fee, m.due_now), (0, 0, 5_000, 0));
        let n = fee_for(Membership::NonMember);
        assert_eq!((n.issuance_fee, n.yearly_fee, n.renewal_fee, n.due_now), (5_000, 6_000, 5_000, 11_000));
        assert_eq!(n.currency, "JPY");
    }
}
