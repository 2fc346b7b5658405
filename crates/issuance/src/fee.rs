//! The brochure's fee table (yen, before tax), as one function.

use proto::issuance::v1::{Fee, Membership};

/// Which procedure a fee is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    /// First issuance of a card.
    New,
    /// Renewal after 5 years.
    Renewal,
    /// Reissue (loss, damage, name or membership change). The brochure names no
    /// separate fee: it is "the same procedure as a new application", so the
    /// issuance fee of the membership after the change applies; the yearly fee
    /// continues on the card's existing schedule.
    Reissue,
}

impl Procedure {
    /// The name the registry and the application record keep.
    pub fn name(self) -> &'static str {
        match self {
            Procedure::New => "new",
            Procedure::Renewal => "renewal",
            Procedure::Reissue => "reissue",
        }
    }
}

/// Fees for a holder with the given membership.
///
/// | | member | non-member |
/// |---|---|---|
/// | first issuance | 0 | 5,000 |
/// | yearly fee, years 1 to 5 | 0 | 6,000 |
/// | renewal after 5 years | 5,000 | 5,000 |
///
/// `due_now` is what the procedure costs at once: a new card or a renewal also
/// starts a yearly-fee year (11,000 for a non-member, as the brochure says).
pub fn fee_for(membership: Membership, procedure: Procedure) -> Fee {
    let member = membership == Membership::Member;
    let issuance_fee = if member { 0 } else { 5_000 };
    let yearly_fee = if member { 0 } else { 6_000 };
    let renewal_fee = 5_000;
    let (due_now, note) = match procedure {
        Procedure::New => (issuance_fee + yearly_fee, "issuance fee plus the first yearly fee"),
        Procedure::Renewal => (renewal_fee + yearly_fee, "renewal fee plus the first yearly fee of the new card"),
        Procedure::Reissue => (issuance_fee, "issuance fee of the membership after the change; yearly fees continue"),
    };
    Fee { issuance_fee, yearly_fee, renewal_fee, due_now, currency: "JPY".into(), note: note.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_of_the_brochure_table() {
        let m = fee_for(Membership::Member, Procedure::New);
        assert_eq!((m.issuance_fee, m.yearly_fee, m.renewal_fee), (0, 0, 5_000));
        let n = fee_for(Membership::NonMember, Procedure::New);
        assert_eq!((n.issuance_fee, n.yearly_fee, n.renewal_fee), (5_000, 6_000, 5_000));
        assert_eq!(n.currency, "JPY");
    }

    #[test]
    fn what_is_due_at_once() {
        let due = |m, p| fee_for(m, p).due_now;
        assert_eq!(due(Membership::Member, Procedure::New), 0);
        assert_eq!(due(Membership::NonMember, Procedure::New), 11_000);
        assert_eq!(due(Membership::Member, Procedure::Renewal), 5_000);
        assert_eq!(due(Membership::NonMember, Procedure::Renewal), 11_000);
        assert_eq!(due(Membership::Member, Procedure::Reissue), 0);
        assert_eq!(due(Membership::NonMember, Procedure::Reissue), 5_000);
    }
}
