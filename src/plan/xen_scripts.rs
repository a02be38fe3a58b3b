//! `vifnet install-xen-scripts` / `uninstall-xen-scripts`: Xen's own script names in
//! /etc/xen/scripts pointed at vifnet, Xen's files kept aside, and given back. Kept aside
//! by `dpkg-divert --rename` on a Debian host, so that an upgrade of xen-utils writes its
//! new scripts beside ours (`<name>.xen`) rather than over our links; or renamed to
//! `<name>.xen` where there is no dpkg (a staged install into `DESTDIR`).

use std::path::PathBuf;

/// Xen's names that vifnet takes over: network-script and vif-script of each mode.
pub const XEN_NAMES: [&str; 6] = ["network-bridge", "vif-bridge", "network-route", "vif-route", "network-nat", "vif-nat"];
/// Ours, beside Xen's (`script=vifnet-route`, or xl.conf's `vif.default.script`).
pub const OUR_NAMES: [&str; 3] = ["vifnet-bridge", "vifnet-route", "vifnet-nat"];
/// What Xen's file of a name becomes while ours is in place.
pub const KEPT_SUFFIX: &str = ".xen";

/// How Xen's files are kept aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAside {
    /// `dpkg-divert --package vifnet --rename`, with dpkg's files under `root` (`/`, or
    /// `$DPKG_ROOT` when dpkg installs into another root).
    Dpkg { root: PathBuf },
    /// A plain rename to `<name>.xen`.
    Rename,
}

/// What `observe` saw at one name of the scripts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFacts {
    pub name: &'static str,
    /// Nothing there, our link, or something else (Xen's script, another link).
    pub at: Found,
    /// Whether `<name>.xen` exists.
    pub kept: bool,
    /// Whether dpkg diverts the name for vifnet (with `KeepAside::Dpkg`).
    pub diverted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    OurLink,
    Other,
}

/// One change to the scripts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStep {
    /// `dpkg-divert --package vifnet --rename --divert <name>.xen --add <name>`
    Divert(&'static str),
    /// `dpkg-divert --package vifnet --rename --remove <name>`
    Undivert(&'static str),
    /// `mv <name> <name>.xen`, or back.
    Rename { from: String, to: String },
    /// `ln -sf <target> <name>`
    Link(&'static str),
    /// `rm <name>` (our link only)
    Unlink(&'static str),
}

impl std::fmt::Display for ScriptStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptStep::Divert(n) => write!(f, "dpkg-divert --package vifnet --rename --divert {n}{KEPT_SUFFIX} --add {n}"),
            ScriptStep::Undivert(n) => write!(f, "dpkg-divert --package vifnet --rename --remove {n}"),
            ScriptStep::Rename { from, to } => write!(f, "mv {from} {to}"),
            ScriptStep::Link(n) => write!(f, "ln -s vifnet {n}"),
            ScriptStep::Unlink(n) => write!(f, "rm {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptsError {
    #[error("{name}: not vifnet's link, and {name}{KEPT_SUFFIX} exists already: move one of them away first")]
    BothThere { name: &'static str },
    #[error("{name}: not a link to vifnet; left as it is")]
    NotOurs { name: &'static str },
}

/// Xen's names at vifnet, Xen's files kept aside; ours beside them. Names already done
/// need nothing: a second install changes nothing.
pub fn install(facts: &[NameFacts], keep: &KeepAside) -> Result<Vec<ScriptStep>, ScriptsError> {
    let mut steps = Vec::new();
    for f in facts {
        let xen = XEN_NAMES.contains(&f.name);
        match (f.at, xen) {
            (Found::OurLink, _) => continue,
            (Found::Other, false) => return Err(ScriptsError::NotOurs { name: f.name }),
            (Found::Other, true) if f.kept => return Err(ScriptsError::BothThere { name: f.name }),
            (Found::Other, true) => steps.push(match keep {
                KeepAside::Dpkg { .. } => ScriptStep::Divert(f.name),
                KeepAside::Rename => ScriptStep::Rename { from: f.name.into(), to: format!("{}{KEPT_SUFFIX}", f.name) },
            }),
            // A name dpkg diverts but whose file is gone: the diversion stays, as dpkg keeps it.
            (Found::Nothing, _) => {}
        }
        steps.push(ScriptStep::Link(f.name));
    }
    Ok(steps)
}

/// Our links gone, Xen's files back where they were. A name that is not our link is left.
pub fn uninstall(facts: &[NameFacts], keep: &KeepAside) -> Vec<ScriptStep> {
    let mut steps = Vec::new();
    for f in facts {
        if f.at == Found::OurLink {
            steps.push(ScriptStep::Unlink(f.name));
        }
        let free = matches!(f.at, Found::OurLink | Found::Nothing);
        match keep {
            KeepAside::Dpkg { .. } if f.diverted && free => steps.push(ScriptStep::Undivert(f.name)),
            KeepAside::Rename if f.kept && free && XEN_NAMES.contains(&f.name) => {
                steps.push(ScriptStep::Rename { from: format!("{}{KEPT_SUFFIX}", f.name), to: f.name.into() })
            }
            _ => {}
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(at: Found, kept: bool, diverted: bool) -> Vec<NameFacts> {
        XEN_NAMES.iter().chain(OUR_NAMES.iter()).map(|&name| NameFacts { name, at: if OUR_NAMES.contains(&name) { Found::Nothing } else { at }, kept, diverted }).collect()
    }

    #[test]
    fn install_keeps_xens_scripts_aside_and_a_second_install_does_nothing() {
        let dpkg = KeepAside::Dpkg { root: "/".into() };
        let steps = install(&facts(Found::Other, false, false), &dpkg).unwrap();
        assert_eq!(steps[..2], [ScriptStep::Divert("network-bridge"), ScriptStep::Link("network-bridge")]);
        assert_eq!(steps.len(), 6 * 2 + 3);
        let done: Vec<NameFacts> = facts(Found::OurLink, false, true).into_iter().map(|f| NameFacts { at: Found::OurLink, ..f }).collect();
        assert_eq!(install(&done, &dpkg).unwrap(), []);
        let renamed = install(&facts(Found::Other, false, false), &KeepAside::Rename).unwrap();
        assert_eq!(renamed[0], ScriptStep::Rename { from: "network-bridge".into(), to: "network-bridge.xen".into() });
    }

    #[test]
    fn install_refuses_to_lose_a_file() {
        assert_eq!(install(&facts(Found::Other, true, false), &KeepAside::Rename), Err(ScriptsError::BothThere { name: "network-bridge" }));
        let mut f = facts(Found::Nothing, false, false);
        f[7].at = Found::Other;
        assert_eq!(install(&f, &KeepAside::Rename), Err(ScriptsError::NotOurs { name: "vifnet-route" }));
    }

    #[test]
    fn uninstall_gives_xens_scripts_back_and_leaves_what_is_not_ours() {
        let dpkg = KeepAside::Dpkg { root: "/".into() };
        let installed: Vec<NameFacts> = facts(Found::OurLink, false, true).into_iter().map(|f| NameFacts { at: Found::OurLink, ..f }).collect();
        let steps = uninstall(&installed, &dpkg);
        assert_eq!(steps[..2], [ScriptStep::Unlink("network-bridge"), ScriptStep::Undivert("network-bridge")]);
        // Someone put another script at the name since: it stays, and so does the diversion.
        assert_eq!(uninstall(&facts(Found::Other, false, true)[..1], &dpkg), []);
        let kept = facts(Found::Nothing, true, false);
        assert_eq!(uninstall(&kept[..1], &KeepAside::Rename), [ScriptStep::Rename { from: "network-bridge.xen".into(), to: "network-bridge".into() }]);
    }
}
