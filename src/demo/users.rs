//! The demo's two logins: `operator` (acknowledges) and `viewer` (reads),
//! written to `users.toml` in the demo's data directory at every start.
//! The password is `--demo-password` when given (a browser test can then
//! log in without reading the banner), else a new random one, printed in
//! the banner either way.

use std::path::Path;

use crate::auth::{Role, User, Users, UsersError, users::hash_password};

pub struct DemoLogins {
    pub operator: (String, String),
    pub viewer: (String, String),
}

pub fn write_demo_users(dir: &Path, password: Option<String>) -> Result<DemoLogins, UsersError> {
    let password = password.unwrap_or_else(random_password);
    let hash = hash_password(&password)?;
    let user = |name: &str, display: &str, role| User {
        name: name.into(),
        display_name: display.into(),
        role,
        password_hash: hash.clone(),
    };
    Users {
        users: vec![
            user("operator", "值班员", Role::Operator),
            user("viewer", "观察员", Role::Viewer),
        ],
    }
    .save(&dir.join("users.toml"))?;
    Ok(DemoLogins {
        operator: ("operator".into(), password.clone()),
        viewer: ("viewer".into(), password),
    })
}

/// 12 letters and digits (no look-alikes), ~70 bits.
fn random_password() -> String {
    const SET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..12)
        .map(|_| SET[rand::random_range(0..SET.len())] as char)
        .collect()
}
