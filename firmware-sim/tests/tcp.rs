//! Modbus TCP server over real sockets, with a raw client written here.

mod common;

use std::time::{Duration, Instant};

use common::*;
use firmware_sim::{Fault, FaultSwitch, RegisterBank, TcpSlave};

async fn slave() -> (TcpSlave, RegisterBank, FaultSwitch) {
    let bank = RegisterBank::new();
    let faults = FaultSwitch::new();
    let s = TcpSlave::start(localhost0(), vec![], bank.clone(), faults.clone())
        .await
        .unwrap();
    (s, bank, faults)
}

#[tokio::test]
async fn reads_all_four_tables() {
    let (s, bank, _) = slave().await;
    bank.set_holding_words(10, &[0x1234, 0xFFFF, 0]);
    bank.set_input_words(20, &[7, 8]);
    for a in [0u16, 2, 8, 9] {
        bank.set_coil(a, true);
    }
    bank.set_discrete(5, true);
    let mut c = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c.read_holding(10, 3).await, vec![0x1234, 0xFFFF, 0]);
    assert_eq!(c.read_input(20, 2).await, vec![7, 8]);
    let coils = c.read_bits(1, 0, 10).await;
    assert_eq!(
        coils,
        vec![
            true, false, true, false, false, false, false, false, true, true
        ]
    );
    // raw packing check: LSB first
    assert_eq!(
        c.request(1, &read_pdu(1, 0, 10)).await,
        vec![1, 2, 0b0000_0101, 0b11]
    );
    assert_eq!(c.read_bits(2, 4, 3).await, vec![false, true, false]);
}

#[tokio::test]
async fn writes_then_read_back() {
    let (s, bank, _) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    // FC5 on / off
    assert_eq!(
        c.request(1, &[5, 0, 3, 0xFF, 0]).await,
        vec![5, 0, 3, 0xFF, 0]
    );
    assert!(bank.coil(3));
    assert_eq!(c.read_bits(1, 3, 1).await, vec![true]);
    c.request(1, &[5, 0, 3, 0, 0]).await;
    assert_eq!(c.read_bits(1, 3, 1).await, vec![false]);
    // FC5 with an invalid value -> 03
    assert_eq!(c.request(1, &[5, 0, 3, 0x12, 0x34]).await, vec![0x85, 3]);
    // FC6
    assert_eq!(
        c.request(1, &[6, 0, 40, 0xAB, 0xCD]).await,
        vec![6, 0, 40, 0xAB, 0xCD]
    );
    assert_eq!(c.read_holding(40, 1).await, vec![0xABCD]);
    // FC15: 10 coils from 100
    assert_eq!(
        c.request(1, &[15, 0, 100, 0, 10, 2, 0b1010_0101, 0b10])
            .await,
        vec![15, 0, 100, 0, 10]
    );
    assert_eq!(
        c.read_bits(1, 100, 10).await,
        vec![
            true, false, true, false, false, true, false, true, false, true
        ]
    );
    // FC16: 3 registers from 200
    assert_eq!(
        c.request(1, &[16, 0, 200, 0, 3, 6, 0, 1, 0x80, 0, 0xFF, 0xFE])
            .await,
        vec![16, 0, 200, 0, 3]
    );
    assert_eq!(c.read_holding(200, 3).await, vec![1, 0x8000, 0xFFFE]);
    assert_eq!(bank.holding(202), 0xFFFE);
    // byte count mismatch -> 03
    assert_eq!(
        c.request(1, &[16, 0, 200, 0, 2, 6, 0, 1, 0, 2, 0, 3]).await,
        vec![0x90, 3]
    );
}

#[tokio::test]
async fn exception_02_out_of_range_and_set_size() {
    let (s, bank, _) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    // default size 10000
    assert_eq!(c.request(1, &read_pdu(3, 9999, 1)).await[0], 3);
    assert_eq!(c.request(1, &read_pdu(3, 9999, 2)).await, vec![0x83, 2]);
    assert_eq!(c.request(1, &read_pdu(4, 10000, 1)).await, vec![0x84, 2]);
    assert_eq!(c.request(1, &read_pdu(1, 9990, 11)).await, vec![0x81, 2]);
    assert_eq!(c.request(1, &[6, 0x27, 0x10, 0, 1]).await, vec![0x86, 2]);
    bank.set_size(100);
    assert_eq!(c.request(1, &read_pdu(3, 99, 1)).await[0], 3);
    assert_eq!(c.request(1, &read_pdu(3, 100, 1)).await, vec![0x83, 2]);
    assert_eq!(c.request(1, &read_pdu(2, 96, 5)).await, vec![0x82, 2]);
    assert_eq!(c.request(1, &[15, 0, 99, 0, 2, 1, 3]).await, vec![0x8F, 2]);
}

#[tokio::test]
async fn exception_01_unknown_function_and_03_bad_quantity() {
    let (s, _, _) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c.request(1, &[0x2B, 0x0E, 1, 0]).await, vec![0xAB, 1]);
    assert_eq!(c.request(1, &[7]).await, vec![0x87, 1]);
    assert_eq!(
        c.request(1, &[0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0]).await,
        vec![0x97, 1]
    );
    assert_eq!(c.request(1, &read_pdu(3, 0, 0)).await, vec![0x83, 3]);
    assert_eq!(c.request(1, &read_pdu(3, 0, 126)).await, vec![0x83, 3]);
    assert_eq!(c.request(1, &read_pdu(4, 0, 125)).await.len(), 2 + 250);
    assert_eq!(c.request(1, &read_pdu(2, 0, 2001)).await, vec![0x82, 3]);
    assert_eq!(c.request(1, &read_pdu(2, 0, 2000)).await.len(), 2 + 250);
}

#[tokio::test]
async fn unit_filter() {
    let bank = RegisterBank::new();
    bank.set_holding(0, 42);
    let s = TcpSlave::start(localhost0(), vec![5], bank.clone(), FaultSwitch::new())
        .await
        .unwrap();
    let mut c = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c.request(5, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 42]);
    assert_eq!(c.request(255, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 42]);
    // other units: gateway target failed to respond
    assert_eq!(c.request(6, &read_pdu(3, 0, 1)).await, vec![0x83, 0x0B]);
    assert_eq!(bank.requests_served(), 2);
}

#[tokio::test]
async fn multi_unit_gateway() {
    let (b1, b2) = (RegisterBank::new(), RegisterBank::new());
    b1.set_holding(0, 1);
    b2.set_holding(0, 2);
    let s = TcpSlave::start_multi(
        localhost0(),
        vec![
            (1, b1.clone(), FaultSwitch::new()),
            (2, b2.clone(), FaultSwitch::new()),
        ],
    )
    .await
    .unwrap();
    let mut c = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 1]);
    assert_eq!(c.request(2, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 2]);
    assert_eq!(c.request(3, &read_pdu(3, 0, 1)).await, vec![0x83, 0x0B]);
}

#[tokio::test]
async fn pipelined_requests_and_concurrent_connections() {
    let (s, bank, _) = slave().await;
    for i in 0..100u16 {
        bank.set_holding(i, i * 3);
    }
    let addr = s.local_addr();
    let mut tasks = Vec::new();
    for k in 0..8u16 {
        tasks.push(tokio::spawn(async move {
            let mut c = RawTcp::connect(addr).await;
            // pipeline 20 requests, then read 20 answers in order
            let mut tids = Vec::new();
            for i in 0..20u16 {
                tids.push(c.send(1, &read_pdu(3, (k * 10 + i) % 100, 1)).await);
            }
            for (i, tid) in tids.into_iter().enumerate() {
                let a = c.recv().await.unwrap();
                assert_eq!(a.tid, tid);
                let addr = (k * 10 + i as u16) % 100;
                assert_eq!(a.pdu, vec![3, 2, ((addr * 3) >> 8) as u8, (addr * 3) as u8]);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(bank.requests_served(), 160);
    assert_eq!(bank.requests_served_fc(3), 160);
    assert_eq!(bank.requests_served_fc(4), 0);
}

#[tokio::test]
async fn fault_wrong_transaction_id() {
    let (s, bank, faults) = slave().await;
    bank.set_holding(0, 9);
    let mut c = RawTcp::connect(s.local_addr()).await;
    faults.set(Fault::WrongTransactionId);
    let tid = c.send(1, &read_pdu(3, 0, 1)).await;
    let a = c.recv().await.unwrap();
    assert_eq!(a.tid, tid.wrapping_add(1));
    assert_eq!(a.pdu, vec![3, 2, 0, 9]);
    faults.set(Fault::None);
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 9]);
}

#[tokio::test]
async fn fault_drop_connection() {
    let (s, bank, faults) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
    faults.set(Fault::DropConnection);
    c.send(1, &[6, 0, 1, 0, 5]).await;
    assert!(c.recv().await.is_err(), "connection must be closed");
    assert_eq!(bank.holding(1), 0, "write must not be applied");
    faults.set(Fault::None);
    let mut c2 = RawTcp::connect(s.local_addr()).await;
    assert_eq!(c2.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
}

#[tokio::test]
async fn fault_silent_sends_no_bytes() {
    let (s, bank, faults) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    faults.set(Fault::Silent);
    c.send(1, &read_pdu(3, 0, 1)).await;
    c.send(1, &[6, 0, 1, 0, 5]).await;
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(
        QUIET_WINDOW,
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut byte),
    )
    .await;
    assert!(r.is_err(), "expected no bytes, got {r:?}");
    assert_eq!(bank.requests_served(), 2, "requests are still counted");
    assert_eq!(bank.holding(1), 0, "silent device applies no write");
    // the connection stays open and works again when the fault clears
    faults.set(Fault::None);
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
}

#[tokio::test]
async fn fault_delay() {
    let (s, _, faults) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    faults.set(Fault::Delay(Duration::from_millis(300)));
    let t0 = Instant::now();
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    // nothing within a window shorter than the delay
    faults.set(Fault::Delay(Duration::from_secs(2)));
    c.send(1, &read_pdu(3, 0, 1)).await;
    assert!(c.recv_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn fault_exception_codes() {
    let (s, bank, faults) = slave().await;
    let mut c = RawTcp::connect(s.local_addr()).await;
    faults.set(Fault::Exception(4));
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![0x83, 4]);
    assert_eq!(c.request(1, &[6, 0, 1, 0, 5]).await, vec![0x86, 4]);
    assert_eq!(bank.holding(1), 0);
    faults.set(Fault::Exception(2));
    assert_eq!(c.request(1, &read_pdu(4, 0, 1)).await, vec![0x84, 2]);
}

#[tokio::test]
async fn fault_corrupt_crc_gives_truncated_pdu_on_tcp() {
    let (s, bank, faults) = slave().await;
    bank.set_holding_words(0, &[1, 2]);
    let mut c = RawTcp::connect(s.local_addr()).await;
    faults.set(Fault::CorruptCrc);
    let tid = c.send(1, &read_pdu(3, 0, 2)).await;
    let a = c.recv().await.unwrap();
    assert_eq!(a.tid, tid);
    // byte count says 4, but the data is missing
    assert_eq!(a.pdu, vec![3, 4, 0]);
    faults.set(Fault::None);
    assert_eq!(
        c.request(1, &read_pdu(3, 0, 2)).await,
        vec![3, 4, 0, 1, 0, 2]
    );
}

#[tokio::test]
async fn stop_closes_connections_and_port() {
    let (mut s, _, _) = slave().await;
    let addr = s.local_addr();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
    s.stop().await;
    s.stop().await; // idempotent
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut byte),
    )
    .await
    .expect("close must be seen");
    assert!(matches!(r, Ok(0) | Err(_)), "got {r:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port must be closed"
    );
}

#[tokio::test]
async fn reboot_closes_then_listens_again_on_same_port() {
    let (mut s, bank, _) = slave().await;
    bank.set_holding(0, 77);
    let addr = s.local_addr();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 77]);

    let down = Duration::from_millis(500);
    let t0 = Instant::now();
    let reboot = tokio::spawn(async move {
        s.reboot(down).await.unwrap();
        s
    });
    // the open connection is closed
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut byte),
    )
    .await
    .expect("close must be seen");
    assert!(matches!(r, Ok(0) | Err(_)));
    // while down, connecting fails (poll until the port is back)
    let mut refused_while_down = false;
    let mut c2 = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(st) => {
                break RawTcp::from_stream(st);
            }
            Err(_) => {
                refused_while_down = true;
                assert!(t0.elapsed() < IO_TIMEOUT, "port never came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(refused_while_down);
    assert!(t0.elapsed() >= down, "came back after {:?}", t0.elapsed());
    assert_eq!(c2.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 77]);
    let s = reboot.await.unwrap();
    assert_eq!(s.local_addr(), addr);
}

#[tokio::test]
async fn reboot_requested_through_fault_switch() {
    let (s, _, faults) = slave().await;
    let addr = s.local_addr();
    let mut c = RawTcp::connect(addr).await;
    c.request(1, &read_pdu(3, 0, 1)).await;
    faults.reboot(Duration::from_millis(300));
    assert!(faults.is_rebooting());
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut byte),
    )
    .await
    .expect("close must be seen");
    assert!(matches!(r, Ok(0) | Err(_)));
    let t0 = Instant::now();
    loop {
        if let Ok(st) = tokio::net::TcpStream::connect(addr).await {
            let mut c2 = RawTcp::from_stream(st);
            assert_eq!(c2.request(1, &read_pdu(3, 0, 1)).await, vec![3, 2, 0, 0]);
            break;
        }
        assert!(t0.elapsed() < IO_TIMEOUT, "port never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(s);
}

#[tokio::test]
async fn tokio_modbus_client_is_compatible() {
    use tokio_modbus::prelude::*;
    let (s, bank, faults) = slave().await;
    bank.set_holding_words(0, &[0x3FC0, 0x0000]);
    bank.set_discrete(3, true);
    let mut ctx = tcp::connect_slave(s.local_addr(), Slave(1)).await.unwrap();
    assert_eq!(
        ctx.read_holding_registers(0, 2).await.unwrap().unwrap(),
        vec![0x3FC0, 0]
    );
    assert_eq!(
        ctx.read_discrete_inputs(0, 5).await.unwrap().unwrap(),
        vec![false, false, false, true, false]
    );
    ctx.write_multiple_registers(10, &[1, 2, 3])
        .await
        .unwrap()
        .unwrap();
    ctx.write_single_coil(7, true).await.unwrap().unwrap();
    ctx.write_multiple_coils(20, &[true, false, true])
        .await
        .unwrap()
        .unwrap();
    ctx.write_single_register(30, 0xBEEF)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bank.holding_words(10, 3), vec![1, 2, 3]);
    assert!(bank.coil(7) && bank.coil(20) && !bank.coil(21) && bank.coil(22));
    assert_eq!(
        ctx.read_input_registers(0, 1).await.unwrap().unwrap(),
        vec![0]
    );
    assert_eq!(
        ctx.read_coils(20, 3).await.unwrap().unwrap(),
        vec![true, false, true]
    );
    assert_eq!(bank.holding(30), 0xBEEF);
    // exceptions surface as Modbus exceptions
    assert_eq!(
        ctx.read_holding_registers(9999, 2).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    faults.set(Fault::Exception(4));
    assert_eq!(
        ctx.read_holding_registers(0, 1).await.unwrap(),
        Err(ExceptionCode::ServerDeviceFailure)
    );
    // the truncated "corrupt" answer is a client error, not a hang
    faults.set(Fault::CorruptCrc);
    let r = tokio::time::timeout(IO_TIMEOUT, ctx.read_holding_registers(0, 2))
        .await
        .expect("must not hang");
    assert!(!matches!(r, Ok(Ok(_))), "got {r:?}");
}
