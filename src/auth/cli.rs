//! `riskgate user add|passwd|remove|list`: the users file from the command
//! line. Passwords come from the terminal (asked twice, not echoed) or, when
//! standard input is not a terminal, from its first line, so a script can
//! pipe one in; never from the command line, where `ps` and the shell's
//! history would show it.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use super::users::{self, MIN_PASSWORD, Role, User, Users, UsersError};

/// The users file a command works on: `--users-file`, else the config's
/// `http.users_file` (relative to the config's directory), else the
/// default. The config is only read for that field, not validated: adding
/// the first user must work on a config that is invalid for want of one.
pub fn users_file(explicit: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, UsersError> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let Some(cfg) = config else {
        return Ok(PathBuf::from("/etc/riskgate/users.toml"));
    };
    let text = std::fs::read_to_string(cfg).map_err(|source| UsersError::Read {
        path: cfg.into(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| UsersError::Parse {
        path: cfg.into(),
        message: e.to_string(),
    })?;
    let named = table
        .get("http")
        .and_then(|h| h.get("users_file"))
        .and_then(|f| f.as_str())
        .unwrap_or("/etc/riskgate/users.toml");
    let p = Path::new(named);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        cfg.parent().unwrap_or(Path::new(".")).join(p)
    })
}

/// Reads a new password (see the module doc) and checks its length.
pub fn read_new_password() -> Result<String, UsersError> {
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("password: ")
            .map_err(|e| UsersError::Invalid(format!("reading the password: {e}")))?;
        let b = rpassword::prompt_password("again: ")
            .map_err(|e| UsersError::Invalid(format!("reading the password: {e}")))?;
        if a != b {
            return Err(UsersError::Invalid("the two passwords differ".into()));
        }
        a
    } else {
        read_stdin_line()?
    };
    if pw.chars().count() < MIN_PASSWORD {
        return Err(UsersError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(pw)
}

/// A password to log in with: from the terminal (not echoed) or the first
/// line of standard input.
pub fn read_password(prompt: &str) -> Result<String, UsersError> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| UsersError::Invalid(format!("reading the password: {e}")))
    } else {
        read_stdin_line()
    }
}

fn read_stdin_line() -> Result<String, UsersError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| UsersError::Invalid(format!("reading the password from stdin: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn load(path: &Path) -> Result<Users, UsersError> {
    Ok(Users::load(path)?.unwrap_or_default())
}

pub fn add(
    path: &Path,
    name: &str,
    role: Role,
    display: Option<&str>,
    password: &str,
) -> Result<String, UsersError> {
    users::check_name(name).map_err(|e| UsersError::Invalid(format!("name: {e}")))?;
    let display = display.unwrap_or("");
    users::check_display(display).map_err(|e| UsersError::Invalid(format!("display name: {e}")))?;
    let mut u = load(path)?;
    if u.get(name).is_some() {
        return Err(UsersError::Invalid(format!(
            "user `{name}` exists in {}; use `riskgate user passwd {name}`",
            path.display()
        )));
    }
    u.users.push(User {
        name: name.into(),
        display_name: display.into(),
        role,
        password_hash: users::hash_password(password)?,
    });
    u.save(path)?;
    Ok(format!(
        "added {name} ({}) to {}",
        role.as_str(),
        path.display()
    ))
}

pub fn passwd(path: &Path, name: &str, password: &str) -> Result<String, UsersError> {
    let mut u = load(path)?;
    let Some(user) = u.users.iter_mut().find(|x| x.name == name) else {
        return Err(UsersError::Invalid(format!(
            "no user `{name}` in {}",
            path.display()
        )));
    };
    user.password_hash = users::hash_password(password)?;
    u.save(path)?;
    Ok(format!(
        "password of {name} changed; their open sessions have ended"
    ))
}

pub fn remove(path: &Path, name: &str) -> Result<String, UsersError> {
    let mut u = load(path)?;
    let before = u.users.len();
    u.users.retain(|x| x.name != name);
    if u.users.len() == before {
        return Err(UsersError::Invalid(format!(
            "no user `{name}` in {}",
            path.display()
        )));
    }
    u.save(path)?;
    Ok(format!("removed {name} from {}", path.display()))
}

/// `name<TAB>role<TAB>display name`, one user a line.
pub fn list(path: &Path) -> Result<String, UsersError> {
    let u = load(path)?;
    let mut out = String::from("name\trole\tdisplay_name\n");
    for x in &u.users {
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            x.name,
            x.role.as_str(),
            x.display_name
        ));
    }
    Ok(out)
}
