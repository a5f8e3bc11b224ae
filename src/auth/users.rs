//! The users file: who may log in to the operator page and API.
//!
//! ```toml
//! [[users]]
//! name = "zhangsan"            # the login, and the name an acknowledgement carries
//! display_name = "张三"
//! role = "operator"            # or "viewer"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ```
//!
//! Invariants: a name is unique, 1-64 characters, letters, digits, `.`,
//! `_` or `-` (so it is safe in a log line, an MQTT payload and a cookie-free
//! audit row); a password is only ever stored as an argon2id PHC string;
//! the file is written whole to a temporary file and renamed over the old
//! one, with mode 0640, so a reader never sees half a file and other users
//! of the machine cannot read the hashes.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

/// The longest name or display name.
pub const MAX_NAME: usize = 64;
/// The shortest password `riskgate user add|passwd` accepts.
pub const MIN_PASSWORD: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads the page and the API.
    Viewer,
    /// Also acknowledges alarms and reads the audit log.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UsersError;
    fn from_str(s: &str) -> Result<Self, UsersError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            _ => Err(UsersError::Invalid(format!(
                "role `{s}`: expected viewer or operator"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
}

impl User {
    /// The display name, or the name when none was given.
    pub fn shown(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }
}

/// The parsed users file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    #[serde(default)]
    pub users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

impl Users {
    /// Reads and checks the file. A missing file is `Ok(None)`: no users.
    pub fn load(path: &Path) -> Result<Option<Users>, UsersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(UsersError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let users: Users = toml::from_str(&text).map_err(|e| UsersError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        users.check().map_err(|message| UsersError::Parse {
            path: path.into(),
            message,
        })?;
        Ok(Some(users))
    }

    /// Every problem of the parsed file, joined (`users[1].name: ...`).
    pub fn check(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        for (i, u) in self.users.iter().enumerate() {
            if let Err(e) = check_name(&u.name) {
                errs.push(format!("users[{i}].name: {e}"));
            }
            if let Err(e) = check_display(&u.display_name) {
                errs.push(format!("users[{i}].display_name: {e}"));
            }
            if PasswordHash::new(&u.password_hash).is_err() {
                errs.push(format!(
                    "users[{i}].password_hash: not an argon2 PHC string (set it with `riskgate user passwd {}`)",
                    u.name
                ));
            }
            if self.users[..i].iter().any(|o| o.name == u.name) {
                errs.push(format!("users[{i}].name: `{}` is given twice", u.name));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Writes the file atomically with mode 0640 (see the module doc).
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let werr = |source| UsersError::Write {
            path: path.into(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| UsersError::Invalid(e.to_string()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(werr)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o640);
        }
        let mut f = opts.open(&tmp).map_err(werr)?;
        f.write_all(
            b"# riskgate operator accounts; manage with `riskgate user add|passwd|remove|list`\n",
        )
        .and_then(|_| f.write_all(text.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(werr)?;
        Ok(())
    }
}

/// A login name: see the module doc for why so narrow.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "`{name}`: only letters, digits, `.`, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

/// A display name: shown on the page, so no control characters.
pub fn check_display(s: &str) -> Result<(), String> {
    if s.chars().count() > MAX_NAME {
        return Err(format!("at most {MAX_NAME} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

/// An argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// True when `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Spends the time of one verification without a user, so a wrong name
/// answers as slowly as a wrong password (no guessing names by timing).
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let h = DUMMY.get_or_init(|| hash_password("riskgate-no-such-user").unwrap_or_default());
    let _ = verify_password(password, h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_file_round_trips_with_mode_0640() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        assert_eq!(Users::load(&p).unwrap(), None);
        let u = Users {
            users: vec![User {
                name: "张三".into(),
                display_name: "张三 (值班)".into(),
                role: Role::Operator,
                password_hash: h,
            }],
        };
        u.save(&p).unwrap();
        assert_eq!(Users::load(&p).unwrap(), Some(u));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let text = r#"
[[users]]
name = "a b"
role = "operator"
password_hash = "plain"
[[users]]
name = "ok"
display_name = "bell\u0007"
role = "viewer"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$q5BsS1Eqr+CwUxkCuy4e1Mo6fIVMTiN0E3bnCz3fZ7E"
"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        std::fs::write(&p, text).unwrap();
        let e = Users::load(&p).unwrap_err().to_string();
        assert!(e.contains("users[0].name"), "{e}");
        assert!(e.contains("users[0].password_hash"), "{e}");
        assert!(e.contains("users[1].display_name"), "{e}");
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("operator").is_ok());
    }
}
