//! SL 651 ASCII frames (SOH) between firmware-sim's station encoder and
//! riskgate's receiver (issue 12 item 1): round trips under proptest,
//! arbitrary characters after SOH never panic, and a station on a real
//! TCP socket whose reports, whole and in packets sent last first, come
//! back as readings at their observation time and are answered in ASCII;
//! a frame naming another centre than the configured one is counted, not
//! taken. The layout is riskgate's reading of the draft (docs/sl651.md,
//! marked [U] there).

mod common;

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use common::free_port;
use common::source::SourceTask;
use firmware_sim::sl651::ascii;
use firmware_sim::sl651::codec::{self, Elem, Identity, Report};
use firmware_sim::sl651::{Sl651Fault, Station};
use proptest::prelude::*;
use riskgate::config::Device;
use riskgate::model::Value;
use riskgate::source::sl651::ascii as rg_ascii;
use riskgate::source::sl651::body::Observed;
use riskgate::source::sl651::config::{Listen, Read, Sl651Point, Sl651Station};
use riskgate::source::sl651::element;
use riskgate::source::sl651::frame::{self, Encoding, Split};

mod sl651_elems;
use sl651_elems::{close, elem, expected};

const ID: Identity = Identity {
    centre: 0x01,
    address: [0x00, 0x12, 0x34, 0x56, 0x78],
    password: 0x1234,
    category: 0x4B,
};

fn t(h: u32, m: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 7, 21)
        .unwrap()
        .and_hms_opt(h, m, 0)
        .unwrap()
}

proptest! {
    /// Whatever a station writes in ASCII, riskgate reads the same values,
    /// whole or as packets reassembled in sequence order.
    #[test]
    fn encode_then_decode(
        serial in 1u16..,
        minute in 0u32..60,
        elements in proptest::collection::vec(elem(), 0..12),
        max_body in 16usize..300,
    ) {
        let report = Report {
            function: codec::ADDED,
            serial,
            sent: t(9, minute),
            observed: t(9, minute),
            elements: elements.clone(),
        };
        let text = ascii::body(&report, &ID);
        let frames = ascii::frames(&ID, report.function, &text, max_body);
        let mut stream: Vec<u8> = frames.concat();
        let mut packets = Vec::new();
        while !stream.is_empty() {
            match frame::split(&stream) {
                Split::Frame(f, n) => {
                    prop_assert_eq!(f.encoding, Encoding::Ascii);
                    prop_assert_eq!(f.centre, ID.centre);
                    prop_assert_eq!(f.station, ID.address);
                    prop_assert_eq!(f.password, ID.password);
                    packets.push(f);
                    stream.drain(..n);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
        prop_assert_eq!(packets.len(), frames.len());
        packets.sort_by_key(|f| f.packet.map(|p| p.1));
        let body: Vec<u8> = packets.iter().flat_map(|f| f.body.clone()).collect();
        prop_assert_eq!(&body, &text);
        let r = rg_ascii::decode_body(&body).unwrap();
        prop_assert_eq!(r.serial, serial);
        prop_assert_eq!(r.station, Some(ID.address));
        prop_assert_eq!(r.category, Some(ID.category));
        prop_assert_eq!(r.groups[0].observed, t(9, minute));
        let want: Vec<(u8, Observed)> = elements.iter().map(expected).collect();
        let got = &r.groups[0].values;
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.0, w.0);
            prop_assert!(close(&g.1, &w.1), "{:?} != {:?}", g, w);
        }
    }

    /// SOH and a plausible header followed by anything: the splitter and
    /// the body decoder never panic and always make progress.
    #[test]
    fn frame_shaped_characters_never_panic(
        head in "[0-9A-F]{22}",
        start in prop_oneof![Just(0x02u8), Just(0x16u8), any::<u8>()],
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = vec![0x01];
        b.extend(head.bytes());
        b.push(start);
        b.extend(&tail);
        let mut rest: &[u8] = &b;
        loop {
            match frame::split(rest) {
                Split::NeedMore => break,
                Split::Frame(f, n) => {
                    prop_assert!(n > 0 && n <= rest.len());
                    let _ = rg_ascii::decode_body(&f.body);
                    rest = &rest[n..];
                }
                Split::Skip(n, _, _) => {
                    prop_assert!(n > 0 && n <= rest.len());
                    rest = &rest[n..];
                }
            }
        }
        let _ = rg_ascii::decode_body(&tail);
    }
}

fn device(id: &str, port: u16, address: [u8; 5], centre: Option<u8>) -> Device<Sl651Station> {
    let point = |pid: &str, el: &str| Sl651Point {
        id: format!("{id}.{pid}"),
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
        id,
        Sl651Station {
            listen: Listen::Tcp(format!("127.0.0.1:{port}")),
            address,
            password: 0x1234,
            report_interval: Duration::from_secs(3600),
            report_margin: Duration::from_secs(600),
            keep_online: false,
            centre,
            points: vec![point("level", "ZU"), point("pt", "PT")],
        },
    )
}

/// Connects once the listener is up (it binds in its own task).
async fn connect(port: u16, id: Identity) -> Station {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Station::tcp(addr, id).await {
            Ok(mut st) => {
                st.ascii = true;
                st.answer_timeout = Duration::from_secs(3);
                return st;
            }
            Err(e) if tokio::time::Instant::now() > deadline => panic!("connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn count(result: &str, station: &str) -> u64 {
    let text = riskgate::metrics::render();
    let key = format!("riskgate_sl651_frames_total{{result=\"{result}\",station=\"{station}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ascii_station_over_tcp() {
    let port = free_port();
    let stranger_address = [0x00, 0x00, 0x00, 0x30, 0x02];
    let devs = vec![
        device("asc-1", port, ID.address, Some(0x01)),
        device("asc-2", port, stranger_address, Some(0x01)),
    ];
    let listen = devs[0].listen.clone();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_path_buf();
    let mut src = SourceTask::start(0, move |_, tx, shutdown| {
        riskgate::source::sl651::run(
            listen,
            devs,
            chrono_tz::Asia::Shanghai,
            data_dir,
            tx,
            shutdown,
        )
    });
    let mut st = connect(port, ID).await;
    let observed = t(14, 5);
    let mut report = Report {
        function: codec::TIMED,
        serial: st.next_serial(),
        sent: observed,
        observed,
        elements: vec![Elem::zu(152.305), Elem::pt(88.8)],
    };
    let answers = st.send(&report, Sl651Fault::None).await.unwrap();
    assert_eq!(answers.len(), 1, "answered once, in ASCII: {answers:?}");
    assert_eq!(
        (answers[0].function, answers[0].serial, answers[0].end),
        (codec::TIMED, report.serial, codec::EOT)
    );
    let r = src
        .reading("asc-1.level", "good", |r| r.quality.is_good())
        .await;
    assert_eq!(r.value, Some(Value::Num(152.305)));
    let want = chrono_tz::Asia::Shanghai
        .from_local_datetime(&observed)
        .unwrap();
    assert_eq!(r.at, want, "stamped with the observation time");

    // Three packets, the last first: reassembled and answered once.
    report.serial = st.next_serial();
    report.observed += chrono::Duration::minutes(5);
    report.elements = vec![Elem::zu(152.4), Elem::pt(90.1)];
    let answers = st.send(&report, Sl651Fault::OutOfOrder).await.unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let r = src
        .reading("asc-1.level", "the packets' value", |r| {
            r.value == Some(Value::Num(152.4))
        })
        .await;
    assert_eq!(r.at, want + chrono::Duration::minutes(5));

    // A bad CRC is answered NAK in ASCII, and the report sent again.
    report.serial = st.next_serial();
    report.observed += chrono::Duration::minutes(5);
    report.elements = vec![Elem::zu(152.5)];
    let answers = st.send(&report, Sl651Fault::BadCrc).await.unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].end, codec::NAK);
    st.send(&report, Sl651Fault::None).await.unwrap();
    src.reading("asc-1.level", "the value sent again", |r| {
        r.value == Some(Value::Num(152.5))
    })
    .await;

    // A known station naming another centre: counted, neither answered
    // nor taken.
    let mut other = connect(
        port,
        Identity {
            centre: 0x02,
            address: stranger_address,
            ..ID
        },
    )
    .await;
    let before = count("wrong_centre", "asc-2");
    other.answer_timeout = Duration::from_millis(500);
    report.serial = other.next_serial();
    let answers = other.send(&report, Sl651Fault::None).await.unwrap();
    assert!(answers.is_empty(), "{answers:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count("wrong_centre", "asc-2") == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "wrong_centre counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count("wrong_centre", "asc-2"), before + 1);
    src.stop().await;
}
