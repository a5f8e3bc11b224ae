//! Every message text the engine writes into an alarm event, in one place.
//!
//! Chinese first: the operator and the county platform read these. Numbers
//! are written as set points are read (`1.0`, `1.62`), units as configured.
//! The golden cases and the county's screens depend on the exact wording, so
//! a change here is a change of the contract's `message`, not a refactoring.

use std::time::Duration;

use crate::model::trim_float;

/// A number in a message: at least one decimal, at most three (`1.0`,
/// `1.62`, `0.125`), as operators read set points.
pub fn num(v: f64) -> String {
    let t = trim_float(v);
    if t.contains('.') { t } else { format!("{t}.0") }
}

// ---- threshold and rate

/// A threshold or rate rule whose point has bad quality: judged as over.
pub fn bad_input_as_over(point: &str, quality: &str) -> String {
    format!("{point} 数据无效 ({quality}), 按超限处理")
}

/// `甲烷 1.62 % ≥ 1.5`: the point, what was judged, the comparison.
pub fn limit(point: &str, what: &str, x: f64, unit: &str, sym: &str, limit: f64) -> String {
    format!("{point} {what}{} {unit} {sym} {}", num(x), num(limit))
}

/// A scheduled limit's message names the period in force.
pub fn in_period(detail: &str, period: &str) -> String {
    format!("{detail} ({period})")
}

/// What an accumulation rule judges: the total over its window
/// (`1h 累计 `) or since the day's start (`日累计(08:00起) `).
pub fn total_over(window: &str) -> String {
    format!("{window} 累计 ")
}

/// What a rate rule judges: the change over its window.
pub fn change_over(window: Duration) -> String {
    format!("{} 内变化 ", humantime::format_duration(window))
}

// ---- interlock and consistency

/// A condition that came out unknown (a bad input) counts as holding.
pub fn condition_unknown(rule: &str) -> String {
    format!("{rule} (输入数据无效, 按条件成立处理)")
}

// ---- lifecycle

pub fn recovered(rule: &str, detail: &str) -> String {
    format!("{rule} 恢复: {detail}")
}

pub fn acknowledged(name: &str, by: &str) -> String {
    format!("{name} 已由 {by} 确认")
}

pub fn cleared_after_ack(name: &str) -> String {
    format!("{name} 确认后解除")
}

// ---- escalation

pub fn escalation_count(subjects: usize) -> String {
    format!("{subjects} 个测点在预警")
}

pub fn escalation_raised(rule: &str, counts: &str) -> String {
    format!("{rule}: {counts}")
}

pub fn escalation_stepped_up(rule: &str, counts: &str) -> String {
    format!("{rule}: {counts}, 升级")
}

pub fn escalation_cleared(rule: &str) -> String {
    format!("{rule}: 恢复")
}

// ---- built-in health alarms

pub fn offline_name(device: &str) -> String {
    format!("{device} 通信中断")
}

pub fn offline(device: &str, detail: &str) -> String {
    format!("{device} 通信中断: {detail}")
}

pub fn flood_name(device: &str) -> String {
    format!("{device} 消息过多")
}

/// A device over its `max_rate`: the excess is dropped.
pub fn flood(device: &str, dropped: u64) -> String {
    format!("{device} 消息速率超过上限, 超出部分已丢弃 ({dropped} 条)")
}

pub fn flood_over(device: &str, dropped: u64) -> String {
    format!("{device} 消息速率恢复正常 (共丢弃 {dropped} 条)")
}

pub fn online_again(device: &str) -> String {
    format!("{device} 通信恢复")
}

pub fn stale_name(point: &str) -> String {
    format!("{point} 数据过期")
}

pub fn stale(point: &str) -> String {
    format!("{point} 数据超时未更新")
}

pub fn fault_name(point: &str) -> String {
    format!("{point} 数据无效")
}

pub fn fault(point: &str, reason: &dyn std::fmt::Display) -> String {
    format!("{point} 数据无效: {reason}")
}

pub fn data_recovered(point: &str) -> String {
    format!("{point} 数据恢复")
}

pub fn tamper_name(point: &str) -> String {
    format!("{point} 防拆报警")
}

pub fn tamper(point: &str) -> String {
    format!("{point}: 机箱门被打开")
}

pub fn tamper_over(point: &str) -> String {
    format!("{point}: 机箱门已关闭")
}

pub fn action_failed_name(point: &str) -> String {
    format!("{point} 联动输出失败")
}

pub fn action_failed(point: &str, why: &str) -> String {
    format!("{point} 联动输出失败: {why}")
}

pub fn action_recovered(point: &str) -> String {
    format!("{point} 联动输出恢复")
}

pub const QUEUE_FULL_NAME: &str = "读数缓存已满";

pub fn queue_dropping(dropped: u64) -> String {
    format!("读数缓存达到上限, 已丢弃最旧的 {dropped} 条读数 (报警不丢弃)")
}

pub const QUEUE_RECOVERED: &str = "读数缓存恢复, 不再丢弃读数";

pub const TELEMETRY_FULL_NAME: &str = "实时数据缓存已满";

pub fn telemetry_dropping(dropped: u64) -> String {
    format!("实时数据缓存达到上限, 已丢弃最旧的 {dropped} 条实时数据 (报警不丢弃)")
}

pub const TELEMETRY_RECOVERED: &str = "实时数据缓存恢复, 不再丢弃实时数据";

pub fn gateway_fault(name: &str, why: &str) -> String {
    format!("{name}: {why}")
}

pub fn gateway_recovered(name: &str) -> String {
    format!("{name} 已恢复")
}

pub const STORE_WRITE_NAME: &str = "网关存储写入失败";

pub fn store_write_failed(why: &str) -> String {
    format!("网关存储写入失败 (磁盘满或读写错误), 读数暂存内存并重试: {why}")
}

pub const STORE_WRITE_RECOVERED: &str = "网关存储写入恢复";

// ---- tamper rules

/// A value that should vary and does not.
pub fn frozen(point: &str, window: &str, range: f64, floor: f64) -> String {
    format!(
        "{point} {window} 内变化 {} 小于 {}, 疑似数据冻结",
        num(range),
        num(floor)
    )
}

/// A sensor at its clean-air value while its neighbour reads high.
pub fn covered(point: &str, x: f64, clean: f64, nb: &str, n: f64, above: f64) -> String {
    format!(
        "{point} {} 接近洁净空气值 {}, 同一风流的 {nb} {} ≥ {}, 疑似探头被遮挡",
        num(x),
        num(clean),
        num(n),
        num(above)
    )
}

/// A device offline while its area works.
pub fn removed(rule: &str, device: &str) -> String {
    format!("{rule}: 设备 {device} 在作业期间离线, 疑似被拆除或破坏")
}

/// A door bit (`opened`) or a camera's blocked flag.
pub fn opened_or_blocked(point: &str, opened: bool, set: bool) -> String {
    match (opened, set) {
        (true, true) => format!("{point}: 机箱或外壳被打开"),
        (true, false) => format!("{point}: 机箱或外壳已关闭"),
        (false, true) => format!("{point}: 摄像机被遮挡"),
        (false, false) => format!("{point}: 摄像机遮挡解除"),
    }
}

/// A step to the test-gas value and back, outside any calibration window.
pub fn test_gas(point: &str, peak: f64, value: f64, within: &str) -> String {
    if peak.is_finite() {
        format!(
            "{point} 在 {within} 内升至 {} (标气 {}) 后回落, 不在标校窗口内, 疑似私自标校",
            num(peak),
            num(value)
        )
    } else {
        format!("{point} 无标校样式变化 (标气 {})", num(value))
    }
}

// ---- unacknowledged escalation (值班值守)

pub fn unacked_escalated(message: &str, after: &str, times: u8) -> String {
    let again = if times > 1 { "再次" } else { "" };
    format!("{message} (超过 {after} 未确认, {again}升级)")
}

// ---- calibration windows (标校)

pub fn calibration_name(point: &str) -> String {
    format!("{point} 标校")
}

pub fn calibration_open(point: &str, by: &str, until: &str) -> String {
    format!("{point} 标校开始, 操作人 {by}, 至 {until}")
}

pub fn calibration_closed(point: &str, by: &str) -> String {
    format!("{point} 标校结束 (操作人 {by})")
}

/// A rule's alarm while its point is being calibrated.
pub fn during_calibration(detail: &str) -> String {
    format!("[标校中] {detail}")
}

pub fn calibration_over(rule: &str) -> String {
    format!("{rule}: 标校结束, 标校期间报警解除")
}

pub fn cut_test_failed(point: &str, value: f64, cut: &str, within: &str) -> String {
    format!(
        "{point} 标校气样 {} 达断电值, {cut} 未在 {within} 内断电: 断电测试失败",
        num(value)
    )
}

pub fn cut_test_passed(point: &str, ms: i64) -> String {
    format!("{point} 断电测试通过 ({ms} ms 内断电)")
}
