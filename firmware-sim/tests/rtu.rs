//! Modbus RTU over a real pseudo-terminal pair made by socat.

mod common;

use std::time::Duration;

use common::*;
use firmware_sim::devices::{self, DeviceKind};
use firmware_sim::{Fault, FaultSwitch, PtyPair, RegisterBank, RtuLine, Scenario};
use tokio_serial::SerialPortBuilderExt;

fn open(path: &str) -> tokio_serial::SerialStream {
    let mut p = tokio_serial::new(path, 9600)
        .open_native_async()
        .expect("open pty");
    let _ = p.set_exclusive(false);
    p
}

#[tokio::test]
async fn rtu_line_with_three_slaves_over_socat_pty() {
    let pty = PtyPair::spawn();

    let gas = devices::device(
        DeviceKind::GasDetector,
        Scenario::constant(&[("ch4", 1.5), ("temp", -5.0)]),
    );
    let res = devices::device(
        DeviceKind::ReservoirRtu,
        Scenario::constant(&[("rain_total", 12.3), ("level", 152300.0)]),
    );
    let silent_bank = RegisterBank::new();
    let silent_faults = FaultSwitch::new();
    silent_faults.set(Fault::Silent);

    let mut line = RtuLine::start(
        &pty.a,
        9600,
        vec![
            (1, gas.bank().clone(), gas.faults().clone()),
            (2, res.bank().clone(), res.faults().clone()),
            (3, silent_bank.clone(), silent_faults.clone()),
        ],
    )
    .await
    .expect("start rtu line");
    let mut port = open(&pty.b);
    let wait = Duration::from_secs(3);

    // slave 1: gas detector, 9 holding registers
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &read_pdu(3, 0, 9)), 5 + 18, wait)
        .await
        .expect("slave 1 answers");
    assert_eq!(&ans[..3], &[1, 3, 18]);
    assert_eq!(
        &ans[ans.len() - 2..],
        &crc(&ans[..ans.len() - 2]),
        "answer CRC"
    );
    let words: Vec<u16> = ans[3..21]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(f32_from_words(&words[0..2]), 1.5);
    assert_eq!(words[6] as i16, -50);
    assert_eq!(words[8], 150);

    // slave 2: reservoir, input registers, u32 high word first
    let ans = rtu_exchange(&mut port, &rtu_frame(2, &read_pdu(4, 0, 4)), 5 + 8, wait)
        .await
        .expect("slave 2 answers");
    assert_eq!(&ans[..3], &[2, 4, 8]);
    assert_eq!(&ans[3..11], &[0, 0, 0, 123, 0, 2, 0x52, 0xEC]); // 123 (0.1 mm), 152300 mm

    // slave 3 is silent: no byte at all
    assert!(
        rtu_exchange(
            &mut port,
            &rtu_frame(3, &read_pdu(3, 0, 1)),
            7,
            QUIET_WINDOW
        )
        .await
        .is_none()
    );
    assert_eq!(silent_bank.requests_served(), 1);

    // unknown unit id: ignored
    assert!(
        rtu_exchange(
            &mut port,
            &rtu_frame(9, &read_pdu(3, 0, 1)),
            7,
            QUIET_WINDOW
        )
        .await
        .is_none()
    );

    // corrupt request CRC: counted, not answered
    let mut bad = rtu_frame(1, &read_pdu(3, 0, 1));
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    assert_eq!(line.frames_bad(), 0);
    assert!(
        rtu_exchange(&mut port, &bad, 7, QUIET_WINDOW)
            .await
            .is_none()
    );
    wait_until("frames_bad == 1", wait, || line.frames_bad() == 1).await;

    // the line recovers: a good request right after is answered
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &read_pdu(3, 8, 1)), 7, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(1, &[3, 2, 0, 150]));

    // write FC16 then read back, exception 02, unknown function 01 (framed by silence)
    let ans = rtu_exchange(
        &mut port,
        &rtu_frame(2, &[16, 0, 50, 0, 2, 4, 0xAA, 0xBB, 0xCC, 0xDD]),
        8,
        wait,
    )
    .await
    .unwrap();
    assert_eq!(ans, rtu_frame(2, &[16, 0, 50, 0, 2]));
    assert_eq!(res.bank().holding_words(50, 2), vec![0xAABB, 0xCCDD]);
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &read_pdu(3, 9999, 2)), 5, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(1, &[0x83, 2]));
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &[0x2B, 0x0E, 1, 0]), 5, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(1, &[0xAB, 1]));

    // FC5 / FC15 on the gas detector's coils
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &[5, 0, 0, 0xFF, 0]), 8, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(1, &[5, 0, 0, 0xFF, 0]));
    assert!(gas.bank().coil(0), "alarm lamp on");
    let ans = rtu_exchange(
        &mut port,
        &rtu_frame(1, &[15, 0, 1, 0, 3, 1, 0b101]),
        8,
        wait,
    )
    .await
    .unwrap();
    assert_eq!(ans, rtu_frame(1, &[15, 0, 1, 0, 3]));
    assert!(gas.bank().coil(1) && !gas.bank().coil(2) && gas.bank().coil(3));

    // broadcast write (unit 0): applied by every slave, no answer
    assert!(
        rtu_exchange(
            &mut port,
            &rtu_frame(0, &[6, 0, 60, 0xBE, 0xEF]),
            8,
            QUIET_WINDOW
        )
        .await
        .is_none()
    );
    wait_until("broadcast applied", wait, || {
        gas.bank().holding(60) == 0xBEEF && res.bank().holding(60) == 0xBEEF
    })
    .await;
    assert_eq!(silent_bank.holding(60), 0, "silent slave applies nothing");

    // corrupt CRC fault on slave 2: answer arrives with inverted CRC bytes
    res.faults().set(Fault::CorruptCrc);
    let ans = rtu_exchange(&mut port, &rtu_frame(2, &read_pdu(3, 50, 1)), 7, wait)
        .await
        .unwrap();
    let good = rtu_frame(2, &[3, 2, 0xAA, 0xBB]);
    assert_eq!(&ans[..5], &good[..5]);
    assert_eq!(ans[5], good[5] ^ 0xFF);
    assert_eq!(ans[6], good[6] ^ 0xFF);
    // exception fault
    res.faults().set(Fault::Exception(4));
    let ans = rtu_exchange(&mut port, &rtu_frame(2, &read_pdu(3, 0, 1)), 5, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(2, &[0x83, 4]));
    res.faults().set(Fault::None);

    // silent slave comes back when its fault is cleared
    silent_faults.set(Fault::None);
    let ans = rtu_exchange(&mut port, &rtu_frame(3, &read_pdu(3, 0, 1)), 7, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(3, &[3, 2, 0, 0]));

    assert_eq!(line.frames_bad(), 1);
    line.stop().await;
    line.stop().await;
    // after stop nobody answers
    assert!(
        rtu_exchange(
            &mut port,
            &rtu_frame(1, &read_pdu(3, 0, 1)),
            7,
            QUIET_WINDOW
        )
        .await
        .is_none()
    );
    drop(pty); // kills socat
}

#[tokio::test]
async fn tokio_modbus_rtu_client_is_compatible() {
    use tokio_modbus::prelude::*;
    let pty = PtyPair::spawn();
    let gas = devices::device(DeviceKind::GasDetector, Scenario::constant(&[("ch4", 0.3)]));
    let mut line = RtuLine::start(
        &pty.a,
        19200,
        vec![(7, gas.bank().clone(), gas.faults().clone())],
    )
    .await
    .unwrap();
    let port = tokio_serial::new(&pty.b, 19200)
        .open_native_async()
        .unwrap();
    let mut ctx = rtu::attach_slave(port, Slave(7));
    let w = tokio::time::timeout(IO_TIMEOUT, ctx.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f32_from_words(&w), 0.3f32);
    tokio::time::timeout(IO_TIMEOUT, ctx.write_single_coil(0, true))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(gas.bank().coil(0));
    let e = tokio::time::timeout(IO_TIMEOUT, ctx.read_input_registers(9998, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e, Err(ExceptionCode::IllegalDataAddress));
    line.stop().await;
}

/// Reads until `want` bytes came, noting when each read returned.
async fn read_timed(
    port: &mut tokio_serial::SerialStream,
    want: usize,
) -> (Vec<u8>, Vec<tokio::time::Instant>) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut at = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < want {
        let n = tokio::time::timeout(IO_TIMEOUT, port.read(&mut buf))
            .await
            .expect("the paced answer comes")
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        at.push(tokio::time::Instant::now());
    }
    (got, at)
}

#[tokio::test]
async fn paced_line_answers_at_the_wire_pace() {
    use tokio::io::AsyncWriteExt;
    // 600 baud: a character is 18 ms, so the answer of 25 bytes is spread
    // over 440 ms and the silence after it is 64 ms, far more than a loaded
    // machine's scheduling delay.
    const BAUD: u32 = 600;
    let char_time = Duration::from_secs_f64(11.0 / f64::from(BAUD));
    let pty = PtyPair::spawn();
    let bank = RegisterBank::new();
    for r in 0..10 {
        bank.set_holding(r, 100 + r);
    }
    let mut line = RtuLine::start_paced(
        &pty.a,
        BAUD,
        firmware_sim::Pace::Wire,
        vec![(1, bank.clone(), FaultSwitch::new())],
    )
    .await
    .unwrap();
    let mut port = open(&pty.b);
    let request = rtu_frame(1, &read_pdu(3, 0, 10));
    let mut words = vec![3, 20];
    for r in 0..10u16 {
        words.extend_from_slice(&(100 + r).to_be_bytes());
    }
    let answer = rtu_frame(1, &words);

    let sent = tokio::time::Instant::now();
    port.write_all(&request).await.unwrap();
    let (got, at) = read_timed(&mut port, answer.len()).await;
    assert_eq!(got, answer);
    // The request's 8 characters, 3.5 of silence and the answer's 25 have
    // passed before the last byte is there.
    let frame_time = char_time.mul_f64(8.0 + 3.5 + 25.0);
    assert!(
        *at.last().unwrap() - sent >= frame_time,
        "answer complete after {:?}, the wire needs {frame_time:?}",
        *at.last().unwrap() - sent
    );
    // Byte by byte, not the whole frame at once.
    assert!(at.len() > 1, "the answer came in one piece");

    // A master that sends again at once has not kept the silence: its
    // request counts as sent 3.5 characters after the answer, and is noted.
    let sent = tokio::time::Instant::now();
    port.write_all(&request).await.unwrap();
    let (got, at) = read_timed(&mut port, answer.len()).await;
    assert_eq!(got, answer);
    assert!(*at.last().unwrap() - sent >= frame_time);
    assert_eq!(line.early_requests(), 1);
    assert_eq!(line.frames_ok(), 2);
    line.stop().await;
}
