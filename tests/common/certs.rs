//! Test certificates made with the openssl CLI (EC P-256, valid two days):
//! a CA, and leaf certificates signed by it with the subjectAltName and
//! extended key usage a test needs. Shared by the uplink's TLS tests
//! (`fault_tls.rs`) and the MQTT source's (`mqtt_source_tls.rs`).

use std::path::Path;
use std::process::Command;

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// `{name}.pem` and `{name}.key`: a self-signed CA with subject `subj`.
pub fn make_ca(dir: &Path, name: &str, subj: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
    ca.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", subj]);
    openssl(dir, &ca);
}

/// `{name}.pem` and `{name}.key`: a certificate for `/CN={cn}` with
/// subjectAltName `san` (e.g. `IP:127.0.0.1,DNS:localhost`) and extended
/// key usage `usage` (`serverAuth` or `clientAuth`), signed by CA `ca`.
pub fn make_cert(dir: &Path, name: &str, cn: &str, san: &str, ca: &str, usage: &str) {
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let (key, csr, ext, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.pem"),
    );
    let subj = format!("/CN={cn}");
    let mut req = vec!["req"];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &req);
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    let serial = format!("0x{:016x}", rand_serial());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

fn rand_serial() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}
