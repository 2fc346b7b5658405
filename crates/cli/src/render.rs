//! One way for a command to print its result: lines for people, or one JSON
//! object per line with `--json`. Commands build a result and hand it to
//! [`print`], so the choice between the two is made in one place.

use serde_json::Value;

use crate::launcher::say;

/// A command's result in both of its printed forms.
pub trait Render {
    /// The lines printed for people.
    fn human(&self) -> Vec<String>;
    /// The one JSON object printed with `--json`.
    fn json(&self) -> Value;
}

/// Prints `result` as `--json` asks.
pub fn print(result: &impl Render, as_json: bool) {
    if as_json {
        say(format_args!("{}", result.json()));
    } else {
        for line in result.human() {
            say(format_args!("{line}"));
        }
    }
}
