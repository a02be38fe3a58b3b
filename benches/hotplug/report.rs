//! Figures: the rows (one per mode × bystanders × verb), the table on stdout, and
//! `target/bench/hotplug.{md,csv}` and `latency.png`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::procs::Forks;

/// One call as measured: the whole process, from the fork that started it to its reaping.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub wall_ms: f64,
    pub rss_kib: u64,
    pub cpu_ms: f64,
    /// None: the events connector lost events, or is missing.
    pub forks: Option<Forks>,
}

/// One line of the figures.
#[derive(Clone, Debug)]
pub struct Row {
    pub mode: &'static str,
    /// Guests online beside the measured calls.
    pub n: u32,
    pub verb: &'static str,
    pub count: usize,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    /// The highest peak RSS of the calls.
    pub rss_kib: u64,
    /// Median CPU time (user + system) of a call, its waited-for children included.
    pub cpu_ms: f64,
    /// The most processes (and threads) any one call forked, descendants included.
    pub children: Option<u32>,
    pub threads: Option<u32>,
    /// Bursts: from the first spawn to the last exit.
    pub makespan: Option<f64>,
    /// The floor's median for the same verb at the same N.
    pub floor: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Row {
    pub fn new(mode: &'static str, n: u32, verb: &'static str, calls: &[Call]) -> Row {
        let mut wall: Vec<f64> = calls.iter().map(|c| c.wall_ms).collect();
        wall.sort_by(f64::total_cmp);
        let mut cpu: Vec<f64> = calls.iter().map(|c| c.cpu_ms).collect();
        cpu.sort_by(f64::total_cmp);
        let forks: Option<Vec<Forks>> = calls.iter().map(|c| c.forks).collect();
        Row {
            mode,
            n,
            verb,
            count: calls.len(),
            median: percentile(&wall, 0.5),
            p90: percentile(&wall, 0.9),
            max: *wall.last().unwrap(),
            rss_kib: calls.iter().map(|c| c.rss_kib).max().unwrap(),
            cpu_ms: percentile(&cpu, 0.5),
            children: forks.as_ref().map(|f| f.iter().map(|f| f.processes).max().unwrap()),
            threads: forks.as_ref().map(|f| f.iter().map(|f| f.threads).max().unwrap()),
            makespan: None,
            floor: None,
        }
    }
    pub fn ratio(&self) -> Option<f64> {
        self.floor.map(|f| self.median / f)
    }
}

/// Fills each online and offline row's `floor` from the floor rows of the same mode and N.
pub fn attach_floors(rows: &mut [Row]) {
    let floors: Vec<(&'static str, u32, &'static str, f64)> =
        rows.iter().filter_map(|r| r.verb.strip_prefix("floor ").map(|v| (r.mode, r.n, v, r.median))).collect();
    for r in rows.iter_mut() {
        r.floor = floors.iter().find(|(m, n, v, _)| *m == r.mode && *n == r.n && *v == r.verb).map(|f| f.3);
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
fn opt_ms(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}")).unwrap_or_default()
}

const HEAD: [&str; 13] = ["mode", "N", "verb", "calls", "median ms", "p90 ms", "max ms", "makespan ms", "peak RSS KiB", "CPU ms", "children", "floor ms", "ratio"];

fn cells(r: &Row) -> [String; 13] {
    [
        r.mode.to_string(),
        r.n.to_string(),
        r.verb.to_string(),
        r.count.to_string(),
        format!("{:.2}", r.median),
        format!("{:.2}", r.p90),
        format!("{:.2}", r.max),
        opt_ms(r.makespan, 1),
        r.rss_kib.to_string(),
        format!("{:.2}", r.cpu_ms),
        opt(r.children),
        opt_ms(r.floor, 2),
        opt_ms(r.ratio(), 2),
    ]
}

pub fn table(rows: &[Row]) -> String {
    let all: Vec<[String; 13]> = std::iter::once(HEAD.map(String::from)).chain(rows.iter().map(cells)).collect();
    let width: Vec<usize> = (0..13).map(|i| all.iter().map(|c| c[i].len()).max().unwrap()).collect();
    let mut out = String::new();
    for (k, c) in all.iter().enumerate() {
        // A blank line between groups of one mode and N.
        if k >= 2 && (rows[k - 1].mode, rows[k - 1].n) != (rows[k - 2].mode, rows[k - 2].n) {
            out.push('\n');
        }
        let line: Vec<String> = c.iter().zip(&width).enumerate().map(|(i, (s, w))| if i < 3 { format!("{s:<w$}") } else { format!("{s:>w$}") }).collect();
        writeln!(out, "{}", line.join("  ").trim_end()).unwrap();
    }
    out
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n|{}\n", HEAD.join(" | "), "---|".repeat(13));
    for r in rows {
        writeln!(out, "| {} |", cells(r).join(" | ")).unwrap();
    }
    out
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("mode,n,verb,calls,median_ms,p90_ms,max_ms,makespan_ms,rss_kib,cpu_ms,children,threads,floor_median_ms,ratio_to_floor\n");
    for r in rows {
        let o = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        writeln!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{},{},{:.3},{},{},{},{}",
            r.mode,
            r.n,
            r.verb.replace(' ', "_"),
            r.count,
            r.median,
            r.p90,
            r.max,
            opt_ms(r.makespan, 3),
            r.rss_kib,
            r.cpu_ms,
            o(r.children),
            o(r.threads),
            opt_ms(r.floor, 3),
            opt_ms(r.ratio(), 3)
        )
        .unwrap();
    }
    out
}

/// Issue 13's targets, each with whether the rows meet it and the figures that decide.
pub fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut line = |ok: bool, what: &str, why: String| writeln!(out, "- [{}] {what}: {why}", if ok { "x" } else { " " }).unwrap();
    fn of<'a>(rows: &'a [Row], verb: &'a str) -> impl Iterator<Item = &'a Row> + Clone {
        rows.iter().filter(move |r| r.verb == verb)
    }
    let calls = |verb: &'static str| of(rows, verb);
    for verb in ["online", "offline"] {
        let worst = calls(verb).max_by(|a, b| a.median.total_cmp(&b.median));
        if let Some(w) = worst {
            line(w.median <= 3.0, &format!("{verb} median <= 3 ms at every N"), format!("worst {:.2} ms ({} at N={})", w.median, w.mode, w.n));
        }
    }
    for verb in ["online", "offline"] {
        let mut worst: Option<(f64, &str)> = None;
        for r in calls(verb).filter(|r| r.n == 4000) {
            if let Some(base) = calls(verb).find(|b| b.mode == r.mode && b.n == 0) {
                let q = r.median / base.median;
                if worst.is_none_or(|(w, _)| q > w) {
                    worst = Some((q, r.mode));
                }
            }
        }
        if let Some((q, m)) = worst {
            line(q <= 1.3, &format!("{verb} at N=4000 within 1.3x of N=0"), format!("worst {q:.2}x ({m})"));
        }
    }
    for (verb, limit) in [("burst 50 online", 120.0), ("burst 50 offline", 150.0), ("burst 200 online", 480.0), ("burst 200 offline", 600.0)] {
        let worst = calls(verb).filter_map(|r| r.makespan.map(|m| (m, r.mode))).max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((m, mode)) = worst {
            line(m <= limit, &format!("{verb} makespan <= {limit} ms"), format!("worst {m:.0} ms ({mode})"));
        }
    }
    let vifnet = || rows.iter().filter(|r| !r.verb.starts_with("floor"));
    if let Some(w) = vifnet().max_by_key(|r| r.rss_kib) {
        line(w.rss_kib <= 8192, "peak RSS <= 8 MiB", format!("highest {} KiB ({} {} at N={})", w.rss_kib, w.mode, w.verb, w.n));
    }
    for verb in ["online", "offline"] {
        let forking: Vec<String> = calls(verb).filter(|r| r.children != Some(0)).map(|r| format!("{} N={}: {}", r.mode, r.n, opt(r.children))).collect();
        line(forking.is_empty(), &format!("no child process per {verb}"), if forking.is_empty() { "none forked".into() } else { forking.join(", ") });
    }
    for verb in ["online", "offline"] {
        let worst = calls(verb).filter_map(|r| r.ratio().map(|q| (q, r.mode, r.n))).max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((q, m, n)) = worst {
            line(q <= 1.0, &format!("{verb} median <= the floor's"), format!("worst {q:.2}x ({m} at N={n})"));
        }
    }
    out
}

/// Median latency against N, per mode, online and offline side by side, the floors dashed.
/// gnuplot reads the script and its data on stdin.
pub fn plot(rows: &[Row], levels: &[u32], png: &Path) -> Result<(), String> {
    let mut modes: Vec<&'static str> = Vec::new();
    for r in rows {
        if !modes.contains(&r.mode) {
            modes.push(r.mode);
        }
    }
    let median = |mode: &str, n: u32, verb: &str| rows.iter().find(|r| r.mode == mode && r.n == n && r.verb == verb).map(|r| format!("{:.3}", r.median)).unwrap_or("NaN".into());
    let mut s = String::new();
    for (panel, verb) in ["online", "offline"].iter().enumerate() {
        writeln!(s, "$d{panel} << EOD").unwrap();
        for mode in &modes {
            writeln!(s, "# {mode}").unwrap();
            for (i, n) in levels.iter().enumerate() {
                writeln!(s, "{i} {n} {} {}", median(mode, *n, verb), median(mode, *n, &format!("floor {verb}"))).unwrap();
            }
            s.push_str("\n\n");
        }
        s.push_str("EOD\n");
    }
    let names: Vec<&str> = modes.to_vec();
    write!(
        s,
        "set terminal pngcairo size 1400,620 font 'DejaVu Sans,11'\nset output '{}'\n\
         set multiplot layout 1,2 title 'vifnet vif <mode> online / offline: median latency of the whole process (solid), the ip+nft floor (dashed)'\n\
         set grid ytics\nset key top left\nset yrange [0:*]\nset xrange [-0.2:{}]\nset xlabel 'guests already online (N)'\nset ylabel 'median ms per call'\n\
         names = \"{}\"\n",
        png.display(),
        levels.len() as f64 - 0.8,
        names.join(" ")
    )
    .unwrap();
    for (panel, verb) in ["online", "offline"].iter().enumerate() {
        writeln!(
            s,
            "set title '{verb}'\nplot for [i=0:{m}] $d{panel} index i using 1:3:xtic(2) with linespoints lw 2 pt 7 lc i+1 title word(names, i+1), \
             for [i=0:{m}] $d{panel} index i using 1:4 with lines dt 2 lc i+1 notitle, 3 with lines lc rgb 'red' dt 3 title 'target 3 ms'",
            m = modes.len() - 1
        )
        .unwrap();
    }
    s.push_str("unset multiplot\n");
    let mut gp = Command::new("gnuplot").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("gnuplot: {e}"))?;
    gp.stdin.take().unwrap().write_all(s.as_bytes()).map_err(|e| e.to_string())?;
    let out = gp.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("gnuplot: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}
