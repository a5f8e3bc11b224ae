//! An SL 651 station on a radio modem's serial line: firmware-sim writes
//! frames into one end of a socat pty pair, riskgate's sl651 source reads
//! the other (issue 12 item 1, serial transport), answers on the same
//! line, and hands readings stamped with the observation time, a
//! multi-packet report reassembled from packets sent last first.

mod common;

use std::time::Duration;

use chrono::{NaiveDate, TimeZone};
use common::source::SourceTask;
use firmware_sim::PtyPair;
use firmware_sim::sl651::codec::{self, Elem, Identity, Report};
use firmware_sim::sl651::{Sl651Fault, Station};
use riskgate::config::raw::{Dur, Parity};
use riskgate::config::{Device, SerialLine};
use riskgate::model::Value;
use riskgate::source::sl651::config::{Listen, Read, Sl651Point, Sl651Station};
use riskgate::source::sl651::element;

fn station(path: &str) -> Device<Sl651Station> {
    let point = |id: &str, el: &str| Sl651Point {
        id: id.into(),
        name: None,
        unit: None,
        element: element::lookup(el).unwrap(),
        read: Read::Value,
        scale: 1.0,
        offset: 0.0,
        tamper: false,
        stale_after: Duration::from_secs(3600),
    };
    Device::new(
        "radio-1",
        Sl651Station {
            listen: Listen::Serial(SerialLine {
                id: "radio".into(),
                path: path.into(),
                baud: 9600,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
                inter_frame_gap: Dur(Duration::from_millis(5)),
                response_timeout: Dur(Duration::from_millis(300)),
                silent_probe_every: 5,
            }),
            address: [0, 0, 0, 0x20, 0x01],
            password: 0x4321,
            report_interval: Duration::from_secs(3600),
            report_margin: Duration::from_secs(600),
            keep_online: false,
            centre: None,
            points: vec![point("radio-1.level", "Z"), point("radio-1.pt", "PT")],
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_on_a_serial_line() {
    let socat = PtyPair::spawn();
    let dev = station(&socat.b);
    let listen = dev.listen.clone();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_path_buf();
    let mut src = SourceTask::start(0, move |_, tx, shutdown| {
        riskgate::source::sl651::run(
            listen,
            vec![dev],
            chrono_tz::Asia::Shanghai,
            data_dir,
            tx,
            shutdown,
        )
    });

    let mut st = Station::serial(
        &socat.a,
        Identity {
            centre: 1,
            address: [0, 0, 0, 0x20, 0x01],
            password: 0x4321,
            category: 0x48,
        },
    )
    .await
    .unwrap();
    st.answer_timeout = Duration::from_secs(3);
    let observed = NaiveDate::from_ymd_opt(2026, 7, 21)
        .unwrap()
        .and_hms_opt(14, 5, 0)
        .unwrap();
    let mut report = Report {
        function: codec::ADDED,
        serial: st.next_serial(),
        sent: observed,
        observed,
        elements: vec![Elem::z(12.345), Elem::pt(88.8)],
    };
    // Sent as 3 packets, the last first: reassembled and answered once.
    let answers = st.send(&report, Sl651Fault::OutOfOrder).await.unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        (answers[0].serial, answers[0].end),
        (report.serial, codec::EOT)
    );
    let r = src
        .reading("radio-1.level", "good", |r| r.quality.is_good())
        .await;
    assert_eq!(r.value, Some(Value::Num(12.345)));
    let want = chrono_tz::Asia::Shanghai
        .from_local_datetime(&observed)
        .unwrap();
    assert_eq!(r.at, want, "stamped with the observation time");

    // Garbage on the line, then a report: the receiver resynchronises.
    st.write(&[0x00, 0x7E, 0x55, 0xAA]).await.unwrap();
    report.serial = st.next_serial();
    report.observed += chrono::Duration::minutes(5);
    report.elements = vec![Elem::z(12.4)];
    let answers = st.send(&report, Sl651Fault::None).await.unwrap();
    assert_eq!(answers.len(), 1);
    let r = src
        .reading("radio-1.level", "the next report", |r| {
            r.value == Some(Value::Num(12.4))
        })
        .await;
    assert_eq!(r.at, want + chrono::Duration::minutes(5));
    src.stop().await;
}
