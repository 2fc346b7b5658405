//! Japanese (the staff's language) with English available: `?lang=en` (kept
//! in a cookie), else the browser's Accept-Language, else Japanese.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// The first of `ja` and `en` the browser prefers, from Accept-Language.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        header.split(',').filter_map(|part| Lang::parse(part.split(';').next()?.trim().get(..2)?)).next()
    }

    /// The text in this language.
    pub fn t<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_first_known() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,ja;q=0.8"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("fr, ja-JP;q=0.5"), Some(Lang::Ja));
        assert_eq!(Lang::from_accept_language("fr"), None);
    }
}
