//! The config file (`--config PATH`): TOML whose keys are the long flags' names, turned into
//! the flags they stand for, so that a value in the file goes through the very parser its flag
//! does. Precedence is flag > environment > file > default: a key is used only when clap says
//! its argument came from nowhere or from its default. Also the example file, generated from
//! the flags, and the effective configuration that `check-config` prints, secrets redacted.
//!
//! Why arguments and not a serde struct: a second description of every setting (names, types,
//! parsers, defaults) would drift from the flags; here the flags are the only description.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, Context};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// Arguments that are not settings, so never keys of the file.
const NOT_SETTINGS: [&str; 3] = ["config", "help", "version"];

/// The flags `path` stands for, for every setting not already given by a flag or an
/// environment variable (`given`, the command line parsed without the file). Every error
/// names the file, the line and the key.
pub(crate) fn arguments(
    path: &Path,
    command: &Command,
    given: &ArgMatches,
) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let at = |span: Range<usize>| Position::of(path, &text, span);
    let table = DeTable::parse(&text).map_err(|error| {
        let position = at(error.span().unwrap_or(0..0));
        anyhow!("{position}: {}", error.message())
    })?;
    let mut settings = FileSettings::default();
    for (key, value) in table.get_ref() {
        let name: &str = key.get_ref();
        let position = at(key.span());
        let arg = setting(command, name).ok_or_else(|| {
            anyhow!(
                "{position}: unknown key `{name}` (the keys are the long flags of \
                 `switchboard --help`, e.g. `max-room-members = 50`)"
            )
        })?;
        let values = texts(arg, value.get_ref())
            .map_err(|expected| anyhow!("{position}: `{name}` {expected}"))?;
        for text in &values {
            check(command, arg, text).map_err(|error| anyhow!("{position}: `{name}`: {error}"))?;
        }
        let from_elsewhere = matches!(
            given.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if from_elsewhere {
            continue;
        }
        settings.ids.push(arg.get_id().to_string());
        settings
            .places
            .push((name.to_owned(), position.to_string()));
        match arg.get_action() {
            ArgAction::SetTrue => {
                if values.first().is_some_and(|value| value == "true") {
                    settings.flags.push(OsString::from(format!("--{name}")));
                }
            }
            _ => settings.flags.extend(
                values
                    .iter()
                    .map(|value| OsString::from(format!("--{name}={value}"))),
            ),
        }
    }
    Ok(settings)
}

/// What a config file contributes: the flags it stands for, and which settings they are.
#[derive(Debug, Default)]
pub(crate) struct FileSettings {
    /// `--name=value` for each setting the file gives and no flag or variable does.
    pub(crate) flags: Vec<OsString>,
    /// The ids of those settings, for `check-config` to say where each value came from.
    pub(crate) ids: Vec<String>,
    /// Where each of them is (`name`, `PATH:LINE:COLUMN`), for errors found later.
    pub(crate) places: Vec<(String, String)>,
}

/// Names the file's lines behind the flags an error mentions: a check across settings
/// (`--turn-secret needs at least one --turn-url`) speaks of flags, the operator wrote keys.
pub(crate) fn locate(error: anyhow::Error, places: &[(String, String)]) -> anyhow::Error {
    let message = format!("{error:#}");
    let mentioned = |name: &str| {
        let flag = format!("--{name}");
        message.match_indices(&flag).any(|(at, _)| {
            let next = message[at + flag.len()..].chars().next();
            !next.is_some_and(|c| c == '-' || c.is_ascii_alphanumeric())
        })
    };
    let found: Vec<String> = places
        .iter()
        .filter(|(name, _)| mentioned(name))
        .map(|(name, place)| format!("{place}: `{name}`"))
        .collect();
    if found.is_empty() {
        error
    } else {
        error.context(found.join(", "))
    }
}

/// The example config file: every setting, commented out with its default, under its help.
pub(crate) fn example(command: &Command) -> String {
    let mut out = String::from(
        "# switchboard's configuration file (TOML). Every key is a long flag of `switchboard --help`,\n\
         # with the same name and the same values; repeatable flags take arrays.\n\
         # Precedence: a flag wins over its environment variable, which wins over this file, which\n\
         # wins over the default. Unknown keys are errors.\n\
         # Each setting below is commented out with its default. Check a change with\n\
         #   switchboard check-config --config /etc/switchboard/switchboard.toml\n\
         # (this file is generated by `switchboard example-config`; a test keeps it current).\n",
    );
    for arg in settings(command).filter(|arg| !arg.is_hide_set()) {
        let name = arg.get_long().expect("settings have long names");
        out.push('\n');
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        for line in wrap(&help, 96) {
            let _ = writeln!(out, "# {line}");
        }
        if let Some(env) = arg.get_env() {
            let _ = writeln!(out, "# (environment: {})", env.to_string_lossy());
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let line = match (arg.get_action(), defaults.as_slice()) {
            (ArgAction::SetTrue, _) => format!("{name} = false"),
            (ArgAction::Append, values) => format!(
                "{name} = [{}]",
                values
                    .iter()
                    .map(|v| toml_value(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (_, [value]) => format!("{name} = {}", toml_value(value)),
            _ => {
                let _ = writeln!(out, "# (not set by default)");
                format!("{name} =")
            }
        };
        let _ = writeln!(out, "# {line}");
    }
    out
}

/// The effective settings, one `key = value` line each with where it came from, as TOML a
/// config file could hold; secrets are redacted.
pub(crate) fn effective(command: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::new();
    for arg in settings(command) {
        let id = arg.get_id().as_str();
        let name = arg.get_long().expect("settings have long names");
        let source = match matches.value_source(id) {
            _ if from_file.iter().any(|file| file == id) => "config file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            Some(_) | None => "default",
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| {
                values
                    .map(|value| redact(name, &value.to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        let value = match (arg.get_action(), raw.as_slice()) {
            (ArgAction::SetTrue, [value]) => value.clone(),
            (ArgAction::SetTrue, _) => "false".to_owned(),
            (ArgAction::Append, values) => format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| toml_value(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (_, [value]) => toml_value(value),
            _ => {
                let _ = writeln!(out, "# {name} is not set");
                continue;
            }
        };
        let _ = writeln!(out, "{name} = {value}  # {source}");
    }
    out
}

/// Hides what must not be printed: secrets, and the password in a Redis URL.
pub(crate) fn redact(name: &str, value: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    match name {
        "turn-secret" | "webhook-secret" => HIDDEN.to_owned(),
        // KID=SECRET: the key id is useful to see, the secret is not.
        "auth-secret" => match value.split_once('=') {
            Some((kid, _)) => format!("{kid}={HIDDEN}"),
            None => HIDDEN.to_owned(),
        },
        "redis" => match value.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                // user:password@ or :password@; a user alone has no secret.
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:{HIDDEN}@{host}"),
                    None => value.to_owned(),
                },
                None => value.to_owned(),
            },
            None => value.to_owned(),
        },
        _ => value.to_owned(),
    }
}

/// Every argument that is a setting (a long flag other than `--config`, `--help`, `--version`).
fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        arg.get_long().is_some()
            && !NOT_SETTINGS.contains(&arg.get_id().as_str())
            && !arg.is_positional()
    })
}

fn setting<'c>(command: &'c Command, name: &str) -> Option<&'c Arg> {
    settings(command).find(|arg| arg.get_long() == Some(name))
}

/// The value(s) of a key as the text a flag would be given, or what was expected instead.
fn texts(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<String>, &'static str> {
    let scalar = |value: &DeValue<'_>| match value {
        DeValue::String(text) => Some(text.to_string()),
        DeValue::Integer(integer) => Some(integer.to_string()),
        DeValue::Float(float) => Some(float.to_string()),
        DeValue::Boolean(_) | DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => None,
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, DeValue::Boolean(on)) => Ok(vec![on.to_string()]),
        (ArgAction::SetTrue, _) => Err("takes true or false"),
        (ArgAction::Append, DeValue::Array(items)) => items
            .iter()
            .map(|item| scalar(item.get_ref()))
            .collect::<Option<Vec<_>>>()
            .ok_or("takes an array of strings"),
        (ArgAction::Append, value) => scalar(value)
            .map(|text| vec![text])
            .ok_or("takes a string or an array of strings"),
        (_, value) => scalar(value)
            .map(|text| vec![text])
            .ok_or("takes a string or a number"),
    }
}

/// Parses one value with its flag's own parser (clap keeps the parsers private, so the value
/// is given to the whole command as that flag alone). Only errors about the value count
/// here: conflicts between settings are the merged parse's business.
fn check(command: &Command, arg: &Arg, text: &str) -> Result<(), String> {
    use clap::error::ErrorKind;
    let name = arg.get_long().expect("settings have long names");
    let flag = match arg.get_action() {
        ArgAction::SetTrue if text == "true" => format!("--{name}"),
        ArgAction::SetTrue => return Ok(()),
        _ => format!("--{name}={text}"),
    };
    match command
        .clone()
        .try_get_matches_from(["switchboard", flag.as_str()])
    {
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
            ) =>
        {
            Err(clap_message(&error))
        }
        _ => Ok(()),
    }
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// A default as TOML: numbers bare, everything else a string.
fn toml_value(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text == "true" || text == "false" {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A place in the file, shown as `PATH:LINE:COLUMN`.
struct Position<'p> {
    path: &'p Path,
    line: usize,
    column: usize,
}

impl<'p> Position<'p> {
    fn of(path: &'p Path, text: &str, span: Range<usize>) -> Position<'p> {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { path, line, column }
    }
}

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redaction() {
        let hidden = |name, value| redact(name, value);
        assert_eq!(hidden("turn-secret", "s"), "<redacted>");
        assert_eq!(hidden("webhook-secret", "s"), "<redacted>");
        assert_eq!(hidden("auth-secret", "k1=s"), "k1=<redacted>");
        assert_eq!(hidden("auth-secret", "nokid"), "<redacted>");
        assert_eq!(
            hidden("redis", "redis://u:p@h:6379/0"),
            "redis://u:<redacted>@h:6379/0"
        );
        assert_eq!(
            hidden("redis", "redis://:p@h:6379"),
            "redis://:<redacted>@h:6379"
        );
        assert_eq!(hidden("redis", "redis://u@h:6379"), "redis://u@h:6379");
        assert_eq!(hidden("redis", "redis://h:6379"), "redis://h:6379");
        assert_eq!(
            hidden("redis", "redis+unix:///run/r.sock"),
            "redis+unix:///run/r.sock"
        );
        assert_eq!(hidden("listen", ":8080"), ":8080");
    }
}
