//! The deployment files, checked without a container engine or systemd (this
//! machine has neither running): what can be proved by reading them.
//! - `deploy/compose.yaml`: the four services, data on volumes, every mounted
//!   file present in the repo, no secret written in it (each password and
//!   token is a required `${VAR:?…}` listed, empty, in `deploy/.env.example`);
//! - Grafana: every datasource a dashboard names is provisioned, and the
//!   InfluxDB one reads the bucket and org riskgate writes to;
//! - `deploy/compose/riskgate.toml` and `deploy/riskgate.toml` are valid
//!   configs, and compose's riskgate reaches InfluxDB by its service name;
//! - `Dockerfile`: multi-stage, a slim Debian runtime, a non-root user, the
//!   store on a volume;
//! - `deploy/riskgate.service`: every hardening line issue 11 asks for.
//!
//! `scripts/package-test.sh` measures the unit's exposure with
//! `systemd-analyze security --offline=yes`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's `environment` as name → value.
fn environment(svc: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(h) = svc["environment"].as_hash() {
        for (k, v) in h {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{k:?}: {other:?}"),
            };
            out.insert(k.as_str().unwrap().to_string(), v);
        }
    }
    out
}

/// The `${NAME…}` references in `text`.
fn references(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn compose_has_the_four_services_and_no_secret_in_files() {
    let c = yaml("deploy/compose.yaml");
    let services = c["services"].as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["grafana", "influxdb", "mosquitto", "riskgate"])
    );

    // Every variable compose reads is in .env.example, and empty there.
    let example = read("deploy/.env.example");
    let listed: BTreeMap<&str, &str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .collect();
    for var in references(&read("deploy/compose.yaml")) {
        assert_eq!(
            listed.get(var.as_str()),
            Some(&""),
            "{var} must be in deploy/.env.example, empty"
        );
    }
    // Passwords and tokens: only required references, never a value.
    for (svc, body) in services {
        for (k, v) in environment(body) {
            let secret = ["PASSWORD", "TOKEN", "SECRET"]
                .iter()
                .any(|s| k.contains(s));
            if secret {
                assert!(
                    v.starts_with("${") && v.contains(":?"),
                    "{svc:?}.{k} = {v:?}: a secret must be a required ${{VAR:?…}}"
                );
            }
        }
    }
    let ignored = read(".gitignore");
    assert!(
        ignored.lines().any(|l| l == "deploy/.env"),
        "deploy/.env must be git-ignored"
    );
    assert!(read(".dockerignore").lines().any(|l| l == "deploy/.env"));

    // Data on named volumes; every bind-mounted file is in the repo.
    let volumes = c["volumes"].as_hash().expect("top-level volumes");
    for (svc, body) in services {
        for m in strings(&body["volumes"]) {
            let src = m.split(':').next().unwrap();
            if src.starts_with("./") {
                let p = repo().join("deploy").join(src);
                assert!(p.exists(), "{svc:?} mounts {src}, missing");
            } else {
                assert!(
                    volumes.contains_key(&Yaml::String(src.into())),
                    "{svc:?}: volume {src} not declared"
                );
            }
        }
    }
    let rg = &c["services"]["riskgate"];
    assert!(
        strings(&rg["volumes"])
            .iter()
            .any(|v| v.ends_with(":/var/lib/riskgate")),
        "riskgate's store must be on a volume"
    );
    assert_eq!(rg["read_only"].as_bool(), Some(true));
    assert_eq!(strings(&rg["cap_drop"]), ["ALL"]);
    // Published on the host's loopback only.
    for (svc, body) in services {
        for p in strings(&body["ports"]) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{svc:?} publishes {p} beyond loopback"
            );
        }
    }
}

#[test]
fn the_dashboards_datasources_are_provisioned_and_match_riskgates_writes() {
    let ds = yaml("deploy/grafana/provisioning/datasources/riskgate.yaml");
    let sources = ds["datasources"].as_vec().expect("datasources");
    let uids: BTreeMap<String, String> = sources
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let influx = sources
        .iter()
        .find(|d| d["type"].as_str() == Some("influxdb"))
        .expect("an InfluxDB datasource");
    assert_eq!(
        influx["secureJsonData"]["token"].as_str(),
        Some("$INFLUXDB_TOKEN"),
        "the token comes from the environment"
    );

    // What compose's riskgate writes to: the same org and bucket, by the
    // service name.
    let path = repo().join("deploy/compose/riskgate.toml");
    let cfg = riskgate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    let i = cfg.influxdb.as_ref().expect("[influxdb]");
    assert_eq!(i.url, influx["url"].as_str().unwrap());
    assert_eq!(
        Some(i.org.as_str()),
        influx["jsonData"]["organization"].as_str()
    );
    assert_eq!(
        Some(i.bucket.as_str()),
        influx["jsonData"]["defaultBucket"].as_str()
    );
    let c = yaml("deploy/compose.yaml");
    assert_eq!(
        c["services"]["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"].as_str(),
        Some(i.bucket.as_str())
    );
    assert_eq!(
        c["services"]["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ORG"].as_str(),
        Some(i.org.as_str())
    );
    let rg_env = environment(&c["services"]["riskgate"]);
    assert!(rg_env.contains_key(i.token_env.as_deref().expect("token_env")));

    // The dashboard provider's folder is where compose mounts the JSON.
    let prov = yaml("deploy/grafana/provisioning/dashboards/riskgate.yaml");
    let dir = prov["providers"][0]["options"]["path"].as_str().unwrap();
    assert!(
        strings(&c["services"]["grafana"]["volumes"])
            .iter()
            .any(|v| v == &format!("./grafana/dashboards:{dir}:ro")),
        "dashboards mounted at {dir}"
    );

    let mut dashboards = 0;
    for entry in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).unwrap() {
        let p = entry.unwrap().path();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        dashboards += 1;
        let mut named = Vec::new();
        collect_datasources(&d, &mut named);
        assert!(!named.is_empty(), "{}", p.display());
        for (uid, ty) in &named {
            assert_eq!(
                uids.get(uid),
                Some(ty),
                "{}: datasource {uid} ({ty}) is not provisioned",
                p.display()
            );
        }
        let queries = d.to_string();
        assert!(queries.contains(&format!("bucket: \\\"{}\\\"", i.bucket)));
        assert!(queries.contains(&format!("_measurement == \\\"{}\\\"", i.measurement)));
        let titles: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["title"].as_str())
            .collect();
        assert!(titles.iter().any(|t| t.contains("Readings")), "{titles:?}");
        assert!(titles.iter().any(|t| t.contains("alarms")), "{titles:?}");
    }
    assert!(dashboards >= 1);
}

/// Every `{"type": …, "uid": …}` datasource reference in a dashboard.
fn collect_datasources(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(ds) = m.get("datasource")
                && let (Some(uid), Some(ty)) = (ds["uid"].as_str(), ds["type"].as_str())
            {
                out.push((uid.into(), ty.into()));
            }
            m.values().for_each(|x| collect_datasources(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_datasources(x, out)),
        _ => {}
    }
}

#[test]
fn the_shipped_configs_are_valid() {
    for rel in ["deploy/riskgate.toml", "deploy/compose/riskgate.toml"] {
        let cfg =
            riskgate::config::load(&repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
        assert_eq!(cfg.gateway.data_dir, "/var/lib/riskgate", "{rel}");
    }
}

#[test]
fn the_dockerfile_is_multi_stage_slim_and_non_root() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].contains("rust:")
            && froms[0].contains("-bookworm")
            && froms[0].ends_with(" AS build")
    );
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    let runtime = text.split(froms[1]).nth(1).unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(runtime.contains("VOLUME [\"/var/lib/riskgate\"]"));
    assert!(
        text.contains("--no-default-features"),
        "no demo in production"
    );
    assert!(
        text.contains("COPY --from=build /out/usr/bin/riskgate /usr/bin/riskgate"),
        "only the binary crosses from the builder"
    );
}

#[test]
fn the_unit_has_every_hardening_line() {
    let unit = read("deploy/riskgate.service");
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "CapabilityBoundingSet=",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectKernelLogs=true",
        "ProtectControlGroups=true",
        "ProtectClock=true",
        "ProtectHostname=true",
        "ProtectProc=invisible",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "RestrictSUIDSGID=true",
        "LockPersonality=true",
        "MemoryDenyWriteExecute=true",
        "NoNewPrivileges=true",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyS rw",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw",
        "DeviceAllow=char-ttyAMA rw",
        "UMask=0027",
        "StartLimitIntervalSec=0",
        "ReadWritePaths=/var/lib/riskgate",
        "User=riskgate",
        "SupplementaryGroups=dialout",
    ] {
        assert!(
            lines.contains(want),
            "deploy/riskgate.service lacks `{want}`"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("LoadCredential=")),
        "secrets through LoadCredential="
    );
    // StartLimitIntervalSec belongs to [Unit] (systemd ignores it in [Service]).
    let unit_section = unit.split("[Service]").next().unwrap();
    assert!(unit_section.contains("\nStartLimitIntervalSec=0\n"));
    assert!(Path::new(&repo().join("deploy/debian/postinst")).exists());
}
