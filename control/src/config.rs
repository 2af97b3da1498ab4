//! The replica's settings, from three places: a TOML file (`--config FILE`), `KILLSWITCH_*`
//! environment variables and command-line flags, in that order of precedence (a flag
//! beats its environment variable, which beats the file, which beats the default).
//!
//! [`Settings`] is both the clap definition of the flags and the effective result: clap
//! resolves flag > environment > default, then [`Settings::from_matches`] lets the file
//! fill every setting that neither a flag nor an environment variable gave
//! (`ArgMatches::value_source` tells which). A file key is the long flag name with `_`
//! for `-` (`heartbeat_interval = "5s"`); an unknown key is an error naming it, so a
//! misspelt setting is never silently ignored. `--print-config` shows the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::logging::LogFormat;

/// What `--print-config` shows instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A Killswitch control replica: keeps program state in etcd, streams pause and resume to
/// collectors and gathers their acknowledgements.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "killswitch-control",
    version,
    about,
    after_help = "Every setting can also be given in the --config file, as its long flag name with '_' for '-' (e.g. heartbeat_interval = \"5s\"). Precedence: flag, then environment variable, then the file, then the default. --print-config shows the result."
)]
pub struct Settings {
    /// TOML file of settings (keys are the long flag names with '_' for '-'); flags and
    /// environment variables override it. Relative paths in it are relative to the file.
    #[arg(long, env = "KILLSWITCH_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML (secrets redacted) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// Log format on stderr; RUST_LOG filters what is logged (default: info).
    #[arg(long, env = "KILLSWITCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Address to listen on for collectors and operators (port 0 picks a free port).
    #[arg(long, env = "KILLSWITCH_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Address to serve Prometheus metrics on, as plain HTTP `GET /metrics` [default: no
    /// metrics listener]. They reveal counts and timings, no program or collector names.
    #[arg(long, env = "KILLSWITCH_METRICS_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "KILLSWITCH_ETCD",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, env = "KILLSWITCH_PREFIX", default_value = "/killswitch/v1")]
    pub prefix: String,
    /// Name of this replica in status output [default: HOSTNAME-PORT].
    #[arg(long, env = "KILLSWITCH_REPLICA_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
    /// URL where peer replicas reach this one [default: https://LISTEN-ADDRESS (http://
    /// with --insecure-dev), with the host name when listening on all interfaces]. With
    /// TLS, its host must be a name or address in --tls-cert.
    #[arg(long, env = "KILLSWITCH_ADVERTISE_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// Lease time-to-live of this replica's keys in etcd: how long its collectors still
    /// count after it dies.
    #[arg(long, env = "KILLSWITCH_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub lease_ttl: Duration,
    /// How often to heartbeat collectors while the etcd watch is healthy (more often for
    /// a session following a fail-closed program whose grace is under three times this).
    /// The watch is probed as often, but at least every 5 s.
    #[arg(long, env = "KILLSWITCH_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub heartbeat_interval: Duration,
    /// How long an etcd request may take, retries included, before the call fails with
    /// UNAVAILABLE; each attempt gets a third of it.
    #[arg(long, env = "KILLSWITCH_ETCD_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub etcd_timeout: Duration,
    /// How often to compare the whole cached state with etcd, to catch a change the watch
    /// missed.
    #[arg(long, env = "KILLSWITCH_RECONCILE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub reconcile_interval: Duration,
    /// How long shutdown waits for collectors to leave after Drain.
    #[arg(long, env = "KILLSWITCH_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub shutdown_grace: Duration,
    /// How long collectors' receipts are kept in etcd. Each replica binds the receipts it
    /// writes to one etcd lease per day, of this time-to-live plus a day, so they vanish
    /// on their own; a change takes effect with the next day's lease.
    #[arg(long, env = "KILLSWITCH_RECEIPT_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub receipt_retention: Duration,
    /// Most collector sessions this replica serves; more are refused with
    /// RESOURCE_EXHAUSTED so collectors move to another replica.
    #[arg(long, env = "KILLSWITCH_MAX_SESSIONS", default_value_t = crate::api::session::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
    /// Most sessions one collector id holds on this replica at once (counted from the
    /// session's opening when a certificate proves the id, else from Hello); more are refused
    /// with RESOURCE_EXHAUSTED, so one stolen certificate cannot fill --max-sessions.
    #[arg(long, env = "KILLSWITCH_MAX_SESSIONS_PER_COLLECTOR", default_value_t = crate::api::session::DEFAULT_MAX_SESSIONS_PER_COLLECTOR)]
    pub max_sessions_per_collector: usize,
    /// PEM certificate chain this replica presents (also to peer replicas).
    #[arg(long, env = "KILLSWITCH_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "KILLSWITCH_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate that issues collectors' and operators' client certificates (and
    /// peer replicas' certificates). A client certificate is optional: operators may use a
    /// bearer token instead.
    #[arg(long, env = "KILLSWITCH_CLIENT_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// The trust domain and the operators with their roles (auth.toml).
    #[arg(long, env = "KILLSWITCH_AUTH_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<PathBuf>,
    /// Plain text without authentication: every caller is an admin named by
    /// killswitch-actor and collectors are trusted by their Hello. Only on a loopback
    /// --listen address; for development and tests.
    #[arg(
        long,
        env = "KILLSWITCH_INSECURE_DEV",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with_all = ["tls_cert", "tls_key", "client_ca", "auth_file"]
    )]
    pub insecure_dev: bool,
    /// PEM CA of etcd's server certificates (etcd endpoints must then be https://).
    #[arg(long, env = "KILLSWITCH_ETCD_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key and --etcd-ca).
    #[arg(long, env = "KILLSWITCH_ETCD_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "KILLSWITCH_ETCD_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password).
    #[arg(long, env = "KILLSWITCH_ETCD_USER", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_user: Option<String>,
    /// etcd password; prefer the environment variable or a config file only root can read,
    /// to keep it out of `ps`.
    #[arg(
        long,
        env = "KILLSWITCH_ETCD_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_redacted"
    )]
    pub etcd_password: Option<String>,
}

/// The `--config` file: every setting optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `log_format`.
    pub log_format: Option<LogFormat>,
    /// `listen`.
    pub listen: Option<SocketAddr>,
    /// `metrics_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `etcd`: an array of endpoints.
    pub etcd: Option<Vec<String>>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `replica_id`.
    pub replica_id: Option<String>,
    /// `advertise_url`.
    pub advertise_url: Option<String>,
    /// `lease_ttl`, a duration such as `"10s"`.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub lease_ttl: Option<Duration>,
    /// `heartbeat_interval`, a duration.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub heartbeat_interval: Option<Duration>,
    /// `etcd_timeout`, a duration.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub etcd_timeout: Option<Duration>,
    /// `reconcile_interval`, a duration.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub reconcile_interval: Option<Duration>,
    /// `shutdown_grace`, a duration.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub shutdown_grace: Option<Duration>,
    /// `receipt_retention`, a duration such as `"90days"`.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub receipt_retention: Option<Duration>,
    /// `max_sessions`.
    pub max_sessions: Option<usize>,
    /// `max_sessions_per_collector`.
    pub max_sessions_per_collector: Option<usize>,
    /// `tls_cert`, relative to the file.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`, relative to the file.
    pub tls_key: Option<PathBuf>,
    /// `client_ca`, relative to the file.
    pub client_ca: Option<PathBuf>,
    /// `auth_file`, relative to the file.
    pub auth_file: Option<PathBuf>,
    /// `insecure_dev`.
    pub insecure_dev: Option<bool>,
    /// `etcd_ca`, relative to the file.
    pub etcd_ca: Option<PathBuf>,
    /// `etcd_cert`, relative to the file.
    pub etcd_cert: Option<PathBuf>,
    /// `etcd_key`, relative to the file.
    pub etcd_key: Option<PathBuf>,
    /// `etcd_user`.
    pub etcd_user: Option<String>,
    /// `etcd_password`.
    pub etcd_password: Option<String>,
}

impl ConfigFile {
    /// Reads and parses `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file = Self::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        file.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(file)
    }

    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Makes every relative path absolute against `dir`, the file's directory, so the
    /// file means the same whatever directory the replica starts in.
    fn resolve_paths(&mut self, dir: &Path) {
        for path in [
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.client_ca,
            &mut self.auth_file,
            &mut self.etcd_ca,
            &mut self.etcd_cert,
            &mut self.etcd_key,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}

/// Why the settings are unusable. Each message names the file, flag or key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or holds an unknown key or a bad value.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and the key.
        message: String,
    },
    /// A setting is out of range or conflicts with another.
    #[error("{0}")]
    Invalid(String),
    /// The settings cannot be shown as TOML (e.g. a path that is not UTF-8).
    #[error("cannot print the configuration as TOML: {0}")]
    Print(#[from] toml::ser::Error),
    /// clap could not build the settings from its own matches (a bug).
    #[error("cannot read the command line: {0}")]
    Matches(#[from] clap::Error),
}

/// Whether a value from `source` beats the config file: flags and environment variables
/// do, defaults (and absent values) do not.
#[must_use]
pub fn overrides_file(source: Option<ValueSource>) -> bool {
    matches!(
        source,
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl Settings {
    /// The effective settings: `matches` (flags over environment over defaults) with the
    /// `--config` file filling whatever neither a flag nor an environment variable set,
    /// checked.
    pub fn from_matches(matches: &ArgMatches) -> Result<Self, ConfigError> {
        let mut settings = Self::from_arg_matches(matches)?;
        if let Some(path) = settings.config.clone() {
            let file = ConfigFile::load(&path)?;
            settings.merge_file(file, |id| overrides_file(matches.value_source(id)));
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Parses `argv` (with the process environment) like the binary does, exiting with
    /// clap's usage message on a bad command line.
    pub fn parse_args() -> Result<Self, ConfigError> {
        Self::from_matches(&Self::command().get_matches())
    }

    /// Takes each setting of `file` that `keep(id)` does not claim for the command line or
    /// the environment (`id` is the setting's name, as in the file).
    pub fn merge_file(&mut self, file: ConfigFile, keep: impl Fn(&str) -> bool) {
        // Destructured so that a key added to the file cannot be forgotten here.
        let ConfigFile {
            log_format,
            listen,
            metrics_listen,
            etcd,
            prefix,
            replica_id,
            advertise_url,
            lease_ttl,
            heartbeat_interval,
            etcd_timeout,
            reconcile_interval,
            shutdown_grace,
            receipt_retention,
            max_sessions,
            max_sessions_per_collector,
            tls_cert,
            tls_key,
            client_ca,
            auth_file,
            insecure_dev,
            etcd_ca,
            etcd_cert,
            etcd_key,
            etcd_user,
            etcd_password,
        } = file;
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(value) = $field {
                    if !keep(stringify!($field)) {
                        self.$field = value;
                    }
                }
            )*};
        }
        macro_rules! take_optional {
            ($($field:ident),*) => {$(
                if $field.is_some() && !keep(stringify!($field)) {
                    self.$field = $field;
                }
            )*};
        }
        take!(
            log_format,
            listen,
            etcd,
            prefix,
            lease_ttl,
            heartbeat_interval,
            etcd_timeout,
            reconcile_interval,
            shutdown_grace,
            receipt_retention,
            max_sessions,
            max_sessions_per_collector,
            insecure_dev
        );
        take_optional!(
            metrics_listen,
            replica_id,
            advertise_url,
            tls_cert,
            tls_key,
            client_ca,
            auth_file,
            etcd_ca,
            etcd_cert,
            etcd_key,
            etcd_user,
            etcd_password
        );
    }

    /// Checks ranges and conflicts that clap cannot see once the file is merged in.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least = |value: Duration, min: Duration, key: &str| {
            if value < min {
                let flag = key.replace('_', "-");
                return Err(ConfigError::Invalid(format!(
                    "--{flag} (or {key} in the config file) must be at least {}, not {}",
                    humantime::format_duration(min),
                    humantime::format_duration(value)
                )));
            }
            Ok(())
        };
        at_least(
            self.heartbeat_interval,
            Duration::from_millis(100),
            "heartbeat_interval",
        )?;
        at_least(
            self.reconcile_interval,
            Duration::from_secs(1),
            "reconcile_interval",
        )?;
        at_least(self.lease_ttl, Duration::from_secs(2), "lease_ttl")?;
        at_least(
            self.receipt_retention,
            Duration::from_secs(60),
            "receipt_retention",
        )?;
        if self.etcd.is_empty() || self.etcd.iter().any(|e| e.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "--etcd (or etcd in the config file) needs at least one endpoint, and no empty ones".into(),
            ));
        }
        if self.insecure_dev {
            let tls = [
                ("tls_cert", self.tls_cert.is_some()),
                ("tls_key", self.tls_key.is_some()),
                ("client_ca", self.client_ca.is_some()),
                ("auth_file", self.auth_file.is_some()),
            ];
            if let Some((key, _)) = tls.iter().find(|(_, set)| *set) {
                return Err(ConfigError::Invalid(format!(
                    "insecure_dev (--insecure-dev) cannot be combined with {key} (--{}): choose plain text for development or TLS",
                    key.replace('_', "-")
                )));
            }
        }
        Ok(())
    }

    /// The settings as a TOML config file, with secrets replaced by [`REDACTED`].
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }
}

fn serialize_duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

// serde's `serialize_with` hands the field by reference.
#[allow(clippy::ref_option)]
fn serialize_redacted<S: Serializer>(
    _value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(REDACTED)
}

fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map(Some).map_err(|error| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({error}): use e.g. \"200ms\", \"5s\" or \"1m\""
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> (Settings, ArgMatches) {
        let matches = Settings::command()
            .try_get_matches_from(std::iter::once("killswitch-control").chain(args.iter().copied()))
            .unwrap();
        (Settings::from_arg_matches(&matches).unwrap(), matches)
    }

    #[test]
    fn definition_is_consistent() {
        Settings::command().debug_assert();
    }

    #[test]
    fn only_flags_and_environment_override_the_file() {
        for (source, overrides) in [
            (None, false),
            (Some(ValueSource::DefaultValue), false),
            (Some(ValueSource::EnvVariable), true),
            (Some(ValueSource::CommandLine), true),
        ] {
            assert_eq!(overrides_file(source), overrides, "{source:?}");
        }
    }

    /// One setting through the three layers: default, file, environment, flag. The
    /// environment is simulated by `env` claiming the key (clap itself orders a flag over
    /// its environment variable; `tests/operability.rs` checks that with the binary).
    #[test]
    fn precedence_is_file_then_environment_then_flag() {
        #[track_caller]
        fn check(file: Option<&str>, env: Option<&str>, flag: Option<&str>, expected: &str) {
            let mut args = vec![];
            if let Some(flag) = flag {
                args.extend(["--heartbeat-interval", flag]);
            }
            let (mut settings, matches) = parse(&args);
            if let Some(env) = env {
                // What clap would have resolved, had the variable been set.
                if flag.is_none() {
                    settings.heartbeat_interval = humantime::parse_duration(env).unwrap();
                }
            }
            let layer = file.map_or_else(ConfigFile::default, |value| {
                ConfigFile::parse(&format!("heartbeat_interval = {value:?}")).unwrap()
            });
            let claimed = |id: &str| {
                overrides_file(matches.value_source(id))
                    || (env.is_some() && id == "heartbeat_interval")
            };
            settings.merge_file(layer, claimed);
            assert_eq!(
                humantime::format_duration(settings.heartbeat_interval).to_string(),
                expected,
                "file {file:?}, env {env:?}, flag {flag:?}"
            );
        }
        check(None, None, None, "10s");
        check(Some("1s"), None, None, "1s");
        check(Some("1s"), Some("2s"), None, "2s");
        check(Some("1s"), Some("2s"), Some("3s"), "3s");
        check(Some("1s"), None, Some("3s"), "3s");
        check(None, Some("2s"), None, "2s");
        check(None, None, Some("3s"), "3s");
    }

    #[test]
    fn the_file_fills_every_kind_of_setting() {
        let file = ConfigFile::parse(
            r#"
            log_format = "json"
            listen = "0.0.0.0:7070"
            metrics_listen = "0.0.0.0:9090"
            etcd = ["https://etcd-1:2379", "https://etcd-2:2379"]
            replica_id = "cp-1"
            max_sessions = 10
            tls_cert = "/etc/killswitch/server.pem"
            etcd_password = "s3cret"
            "#,
        )
        .unwrap();
        let (mut settings, matches) = parse(&["--replica-id", "from-flag"]);
        settings.merge_file(file, |id| overrides_file(matches.value_source(id)));
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.listen.to_string(), "0.0.0.0:7070");
        assert_eq!(
            settings.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9090")
        );
        assert_eq!(settings.etcd.len(), 2);
        assert_eq!(settings.replica_id.as_deref(), Some("from-flag"));
        assert_eq!(settings.max_sessions, 10);
        assert_eq!(
            settings.tls_cert.as_deref(),
            Some(Path::new("/etc/killswitch/server.pem"))
        );
        assert_eq!(settings.prefix, "/killswitch/v1", "default kept");
        let printed = settings.to_toml().unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains(&format!("etcd_password = \"{REDACTED}\"")));
    }

    #[test]
    fn printed_settings_are_a_valid_config_file() {
        let (settings, _) = parse(&[
            "--insecure-dev",
            "--replica-id",
            "r1",
            "--etcd-user",
            "u",
            "--etcd-password",
            "p",
            "--etcd-ca",
            "/ca.pem",
        ]);
        let printed = settings.to_toml().unwrap();
        let file = ConfigFile::parse(&printed).unwrap();
        assert_eq!(file.heartbeat_interval, Some(Duration::from_secs(10)));
        assert_eq!(file.insecure_dev, Some(true));
        assert_eq!(file.replica_id.as_deref(), Some("r1"));
    }

    #[test]
    fn bad_files_name_the_key_or_value() {
        for (text, needle) in [
            (
                "heartbeat_intervall = \"1s\"",
                "unknown field `heartbeat_intervall`",
            ),
            ("heartbeat_interval = \"soon\"", "invalid duration \"soon\""),
            ("heartbeat_interval = 5", "heartbeat_interval"),
            ("listen = \"nowhere\"", "listen"),
            ("metrics_listen = \"nowhere\"", "metrics_listen"),
            ("log_format = \"xml\"", "log_format"),
            ("etcd = \"http://x:2379\"", "etcd"),
            ("[tls]\ncert = \"x\"", "unknown field `tls`"),
            ("listen = ", "listen"),
        ] {
            let error = ConfigFile::parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let mut file =
            ConfigFile::parse("tls_cert = \"certs/server.pem\"\netcd_ca = \"/abs/ca.pem\"")
                .unwrap();
        file.resolve_paths(Path::new("/etc/killswitch"));
        assert_eq!(
            file.tls_cert.as_deref(),
            Some(Path::new("/etc/killswitch/certs/server.pem"))
        );
        assert_eq!(file.etcd_ca.as_deref(), Some(Path::new("/abs/ca.pem")));
    }

    #[test]
    fn validation_names_the_setting() {
        for (args, needle) in [
            (
                &["--heartbeat-interval", "50ms"][..],
                "--heartbeat-interval (or heartbeat_interval",
            ),
            (&["--reconcile-interval", "10ms"][..], "reconcile_interval"),
            (&["--lease-ttl", "1s"][..], "lease_ttl"),
            (&["--etcd", ""][..], "--etcd"),
        ] {
            let (settings, _) = parse(args);
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        let (mut settings, _) = parse(&["--tls-cert", "/server.pem"]);
        settings.merge_file(ConfigFile::parse("insecure_dev = true").unwrap(), |_| false);
        let error = settings.validate().unwrap_err().to_string();
        assert!(
            error.contains("cannot be combined with tls_cert"),
            "{error}"
        );
    }
}
