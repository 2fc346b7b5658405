//! Every flag and argument of `hpki-ca` says what it is for in `--help`.

use clap::CommandFactory;

fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            out.push(format!("{path} --{id}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            out.push(format!("{path} {} (the command itself)", sub.get_name()));
        }
        undocumented(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_flag_and_command_has_help_text() {
    let mut missing = Vec::new();
    undocumented(&crate::Args::command(), "hpki-ca", &mut missing);
    assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
}
