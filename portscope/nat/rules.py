"""NAT rules as `iptables-save -t nat` and `nft -j list ruleset` print them.

Two facts come out of the rules: each source-NAT rule's port range and flags
(what the SNAT capacity of a destination is), and the ports that inbound
DNAT/REDIRECT rules hold on this host without any socket (Kubernetes NodePorts,
CNI hostPorts, Docker published ports, port forwards). A port is held when a rule
matches it as destination port and either translates it itself or jumps to a
chain that, directly or through further chains, ends in a DNAT/REDIRECT (the
kube-proxy layout: KUBE-NODEPORTS -> KUBE-EXT/SVC -> KUBE-SEP -> DNAT), or when it
is a key of an nftables verdict map named like kube-proxy's `service-nodeports`.

Lines and rules we cannot read are skipped and counted, never guessed.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from ..errors import NotPermitted, SystemReadError
from ..netns import proc_net_path

NAT_TARGETS = {"SNAT": "snat", "MASQUERADE": "masquerade", "DNAT": "dnat", "REDIRECT": "redirect"}
INBOUND = ("dnat", "redirect")
PROTOS = ("tcp", "udp", "sctp", "dccp", "udplite")


@dataclass
class NatRule:
    """One NAT rule as iptables-save or nft printed it: kind, protocol, port range, flags."""
    table: str
    chain: str
    kind: str                      # snat | masquerade | dnat | redirect
    proto: str | None              # matched protocol, None for any
    ports: tuple[int, int] | None  # translated port range, None for the kernel's default
    random: bool
    random_fully: bool
    source: str                    # iptables | nft
    family: int | None = None      # 4, 6, None (nft inet)
    to_addr: str | None = None     # --to-source / --to-destination address part
    persistent: bool = False
    backend: str | None = None     # iptables: nft | legacy

    def to_json(self) -> dict:
        """The `rules[]` object of `nat --json`."""
        return {"table": self.table, "chain": self.chain, "kind": self.kind, "proto": self.proto,
                "ports": None if self.ports is None else f"{self.ports[0]}-{self.ports[1]}",
                "random": self.random, "random_fully": self.random_fully, "source": self.source,
                "family": self.family, "to": self.to_addr, "persistent": self.persistent}


@dataclass
class Holder:
    """Destination ports an inbound NAT rule (or a NodePort map) takes for itself."""
    proto: str | None
    low: int
    high: int
    chain: str
    kind: str                      # dnat | redirect | map
    source: str


@dataclass
class RuleSet:
    """What the rule readers found: NAT rules, held ports, what was skipped and why."""
    rules: list = field(default_factory=list)
    holders: list = field(default_factory=list)
    skipped: int = 0               # rules or lines we could not read
    skipped_examples: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)   # iptables/nft -> command run, or why not

    def extend(self, other: "RuleSet") -> None:
        """Add another reader's rules, holders, skips and notes."""
        self.rules += other.rules
        self.holders += other.holders
        self.skipped += other.skipped
        self.skipped_examples += other.skipped_examples
        self.notes += other.notes

    def skip(self, what: str) -> None:
        """Count one unreadable line or rule (and keep a few as examples)."""
        self.skipped += 1
        if len(self.skipped_examples) < 5:
            self.skipped_examples.append(what[:200])


def port_range(text: str, sep: str = "-") -> tuple[int, int]:
    """'40000-40009' or '8080' -> (low, high); ValueError when not a valid port range."""
    a, _, b = str(text).partition(sep)
    low = int(a)
    high = int(b) if b else low
    if not (0 <= low <= 65535 and 0 <= high <= 65535):
        raise ValueError(f"port out of range: {text!r}")
    if high < low:                 # the kernel swaps them too (nf_nat_l4proto_unique_tuple)
        low, high = high, low
    return low, high


def _split_to(value: str) -> tuple[str, tuple[int, int] | None]:
    """--to-source/--to-destination: 'ADDR[-ADDR][:PORT[-PORT]]', IPv6 in brackets."""
    if value.startswith("["):
        addr, _, rest = value[1:].partition("]")
        if not rest:
            return addr, None
        if not rest.startswith(":"):
            raise ValueError(f"bad address {value!r}")
        return addr, port_range(rest[1:])
    if value.count(":") == 1:
        addr, _, ports = value.partition(":")
        return addr, port_range(ports)
    if value.startswith(":"):
        return "", port_range(value[1:])
    return value, None


def parse_iptables_save(text: str, family: int = 4, backend: str | None = None) -> RuleSet:
    """Rules of every table in `iptables-save` output (only `nat` carries NAT targets)."""
    out = RuleSet()
    table = None
    rows = []                              # (chain, proto, dports, target, tokens)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if line.startswith(":"):
            continue
        if line.startswith("["):           # -c counters: "[pkts:bytes] -A ..."
            end = line.find("]")
            if end < 0:
                out.skip(line)
                continue
            line = line[end + 1:].strip()
        if not line.startswith("-A ") or table is None:
            out.skip(line)
            continue
        try:
            tokens = shlex.split(line)
        except ValueError:
            out.skip(line)
            continue
        row = _iptables_rule(tokens)
        if row is None:
            out.skip(line)
            continue
        chain, proto, dports, target, opts = row
        rows.append((table, chain, proto, dports, target))
        kind = NAT_TARGETS.get(target or "")
        if kind is None:
            continue
        try:
            rule = _iptables_nat(table, chain, kind, proto, opts, family, backend)
        except ValueError:
            out.skip(line)
            continue
        out.rules.append(rule)
    out.holders += _holders(rows, "iptables", {("nat", "PREROUTING")})
    return out


def _iptables_rule(tokens: list[str]):
    """-> (chain, proto, [(lo, hi)], target, {option: value}) or None when unreadable."""
    if len(tokens) < 2:
        return None
    chain = tokens[1]
    proto = None
    dports: list[tuple[int, int]] = []
    target = None
    opts: dict[str, str | bool] = {}
    negate = False
    i = 2
    n = len(tokens)
    try:
        while i < n:
            tok = tokens[i]
            val = tokens[i + 1] if i + 1 < n else None
            if tok == "!":
                negate = True
                i += 1
                continue
            if tok in ("-p", "--protocol"):
                if val is None:
                    return None
                if not negate:
                    proto = val.lower()
                i += 2
            elif tok in ("--dport", "--destination-port"):
                if val is None:
                    return None
                if not negate:
                    dports.append(port_range(val, ":"))
                i += 2
            elif tok in ("--dports", "--destination-ports"):
                if val is None:
                    return None
                if not negate:
                    dports += [port_range(p, ":") for p in val.split(",")]
                i += 2
            elif tok in ("-j", "--jump", "-g", "--goto"):
                if val is None:
                    return None
                target = val
                i += 2
            elif tok in ("--to-ports", "--to-source", "--to-destination", "--to"):
                if val is None:
                    return None
                opts.setdefault(tok, val)
                i += 2
            elif tok in ("--random", "--random-fully", "--persistent"):
                opts[tok] = True
                i += 1
            elif tok == "--comment":
                i += 2
            else:
                i += 1
            negate = False
    except ValueError:
        return None
    return chain, proto, dports, target, opts


def _iptables_nat(table, chain, kind, proto, opts, family, backend) -> NatRule:
    ports = None
    to_addr = None
    if "--to-ports" in opts:
        ports = port_range(opts["--to-ports"])
    for key in ("--to-source", "--to-destination"):
        if key in opts:
            to_addr, p = _split_to(opts[key])
            to_addr = to_addr or None
            ports = p or ports
    if kind in ("snat", "dnat") and "--to-source" not in opts and "--to-destination" not in opts:
        raise ValueError(f"{kind.upper()} without a target address")
    return NatRule(table=table, chain=chain, kind=kind, proto=proto, ports=ports,
                   random=bool(opts.get("--random")), random_fully=bool(opts.get("--random-fully")),
                   source="iptables", family=family, to_addr=to_addr,
                   persistent=bool(opts.get("--persistent")), backend=backend)


def _holders(rows, source: str, roots: set[tuple[str, str]]) -> list[Holder]:
    """Ports matched, on the way in (chains reachable from a prerouting hook), by rules
    that end, directly or through chains, in DNAT/REDIRECT. A REDIRECT in OUTPUT
    (a transparent proxy for outgoing traffic) holds no port of this host."""
    inbound_chains: set[tuple[str, str]] = set()
    jumps: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for table, chain, _, _, target in rows:
        kind = NAT_TARGETS.get(target or "")
        if kind in INBOUND:
            inbound_chains.add((table, chain))
        elif target and kind is None:
            jumps.setdefault((table, chain), set()).add((table, target))
    reach = set(roots)
    todo = list(roots)
    while todo:
        for nxt in jumps.get(todo.pop(), ()):
            if nxt not in reach:
                reach.add(nxt)
                todo.append(nxt)
    changed = True
    while changed:                          # chains that reach an inbound NAT rule
        changed = False
        for c, targets in jumps.items():
            if c not in inbound_chains and targets & inbound_chains:
                inbound_chains.add(c)
                changed = True
    out = []
    for table, chain, proto, dports, target in rows:
        if not dports or (table, chain) not in reach:
            continue
        kind = NAT_TARGETS.get(target or "")
        if kind in INBOUND or (kind is None and target and (table, target) in inbound_chains):
            for lo, hi in dports:
                out.append(Holder(proto, lo, hi, chain, kind or "dnat", source))
    return out


# ---- nftables -------------------------------------------------------------------------

_NFT_FAMILY = {"ip": 4, "ip6": 6, "inet": None}


def parse_nft_json(text: str) -> RuleSet:
    """`nft -j list ruleset` -> NAT rules and held ports of the ip, ip6 and inet tables.

    Rules made by iptables-nft appear here as `xt` expressions without their options;
    they are left to the iptables-save reader (counted in `sources`, not skipped)."""
    try:
        doc = json.loads(text) if text.strip() else {"nftables": []}
        items = doc["nftables"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise SystemReadError("`nft -j list ruleset` printed something that is not its JSON ruleset")
    out = RuleSet()
    rows = []
    roots: set[tuple[str, str]] = set()
    xt = 0
    for item in items:
        if not isinstance(item, dict):
            out.skip(str(item))
            continue
        ch = item.get("chain")
        if isinstance(ch, dict) and ch.get("hook") == "prerouting" and ch.get("type") == "nat":
            roots.add((f"{ch.get('family')} {ch.get('table')}", str(ch.get("name"))))
            continue
        if "map" in item:
            out.holders += _nft_map_holders(item["map"])
            continue
        rule = item.get("rule")
        if not isinstance(rule, dict):
            continue
        fam = rule.get("family")
        if fam not in _NFT_FAMILY:
            continue
        exprs = rule.get("expr")
        if not isinstance(exprs, list):
            out.skip(json.dumps(rule)[:200])
            continue
        if any(isinstance(e, dict) and "xt" in e for e in exprs):
            xt += 1
            continue
        try:
            parsed = _nft_rule(rule, exprs)
        except (ValueError, TypeError, KeyError, AttributeError):
            out.skip(json.dumps(rule)[:200])
            continue
        table_chain, proto, dports, target, nat = parsed
        rows.append((table_chain[0], table_chain[1], proto, dports, target))
        if nat is not None:
            out.rules.append(nat)
    out.holders += _holders(rows, "nft", roots)
    out.sources["nft_xt_rules"] = xt
    return out


def _nft_rule(rule: dict, exprs: list):
    table = f"{rule['family']} {rule['table']}"
    chain = rule["chain"]
    proto = None
    dports: list[tuple[int, int]] = []
    target = None
    nat = None
    for e in exprs:
        if not isinstance(e, dict):
            raise ValueError("expression is not an object")
        if "match" in e:
            m = e["match"]
            if m.get("op", "==") not in ("==", "in"):
                continue
            left, right = m.get("left"), m.get("right")
            if isinstance(left, dict) and "meta" in left and left["meta"].get("key") == "l4proto":
                if isinstance(right, str):
                    proto = right
            elif isinstance(left, dict) and "payload" in left:
                pl = left["payload"]
                if pl.get("field") == "dport" and pl.get("protocol") in PROTOS + ("th",):
                    if pl["protocol"] != "th":
                        proto = pl["protocol"]
                    dports += _nft_ports(right)
        elif "jump" in e or "goto" in e:
            target = (e.get("jump") or e.get("goto") or {})["target"]
        else:
            for kind in ("snat", "dnat", "masquerade", "redirect"):
                if kind in e:
                    st = e[kind] or {}
                    flags = st.get("flags") or []
                    if isinstance(flags, str):
                        flags = [flags]
                    ports = None
                    if "port" in st:
                        ps = _nft_ports(st["port"])
                        if len(ps) != 1:
                            raise ValueError("NAT port is not one range")
                        ports = ps[0]
                    addr = st.get("addr")
                    if isinstance(addr, dict) and "range" in addr:
                        addr = "-".join(map(str, addr["range"]))
                    elif addr is not None and not isinstance(addr, str):
                        raise ValueError("NAT address is an expression we do not read")
                    fam = st.get("family")
                    family = {"ip": 4, "ip6": 6}.get(str(fam), _NFT_FAMILY[rule["family"]])
                    nat = NatRule(table=table, chain=chain, kind=kind, proto=proto, ports=ports,
                                  random="random" in flags, random_fully="fully-random" in flags,
                                  source="nft", family=family, to_addr=addr,
                                  persistent="persistent" in flags)
                    target = kind.upper()
    return (table, chain), proto, dports, target, nat


def _nft_ports(right) -> list[tuple[int, int]]:
    if isinstance(right, int):
        return [port_range(str(right))]
    if isinstance(right, dict) and "range" in right:
        a, b = right["range"]
        return [port_range(f"{int(a)}-{int(b)}")]
    if isinstance(right, dict) and "set" in right:
        out = []
        for v in right["set"]:
            out += _nft_ports(v)
        return out
    raise ValueError(f"port expression we do not read: {right!r}")


def _nft_map_holders(m: dict) -> list[Holder]:
    """kube-proxy's nftables mode keeps NodePorts in a verdict map `service-nodeports`
    keyed by `inet_proto . inet_service`."""
    name = str(m.get("name", ""))
    if "nodeport" not in name.lower() or m.get("map") != "verdict":
        return []
    out = []
    for elem in m.get("elem") or []:
        try:
            key = elem[0]
            if isinstance(key, dict) and "elem" in key:
                key = key["elem"]["val"]
            if isinstance(key, dict) and "concat" in key:
                proto, port = key["concat"][0], key["concat"][-1]
            else:
                proto, port = None, key
            for lo, hi in _nft_ports(port):
                out.append(Holder(proto if isinstance(proto, str) else None, lo, hi, name, "map", "nft"))
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    return out


# ---- live -----------------------------------------------------------------------------

def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def _legacy_tables(name: str) -> bool:
    """Does this namespace have a legacy (x_tables) nat table? Reading the file
    instantiates nothing, unlike running iptables-legacy-save."""
    try:
        with open(proc_net_path(name)) as f:
            return "nat" in f.read().split()
    except OSError:
        return False


def read_rules() -> RuleSet:
    """NAT rules of the calling thread's namespace (commands run inside it)."""
    out = RuleSet()
    for fam, base, names in ((4, "iptables", "ip_tables_names"), (6, "ip6tables", "ip6_tables_names")):
        runs: list[tuple[str, str | None]] = []
        if shutil.which(f"{base}-nft-save"):
            runs.append((f"{base}-nft-save", "nft"))
            if shutil.which(f"{base}-legacy-save") and _legacy_tables(names):
                runs.append((f"{base}-legacy-save", "legacy"))
        elif shutil.which(f"{base}-save"):
            runs.append((f"{base}-save", None))
        if not runs:
            out.sources[base] = None
            out.notes.append(f"{base}-save not found: {base} NAT rules (IPv{fam}) unknown")
            continue
        for cmd, backend in runs:
            res = _run([cmd, "-t", "nat"])
            if res.returncode != 0:
                err = (res.stderr.strip().splitlines() or [""])[0]
                if "ermission denied" in err or "not permitted" in err:
                    raise NotPermitted(f"`{cmd} -t nat` needs CAP_NET_ADMIN: {err}")
                # no nat table at all is "nothing", anything else is unknown
                if "does not exist" in err or "Table does not exist" in err:
                    continue
                out.notes.append(f"`{cmd} -t nat` failed ({err}): those rules unknown")
                continue
            out.extend(parse_iptables_save(res.stdout, fam, backend))
            out.sources.setdefault(base, []).append(cmd)
    if shutil.which("nft"):
        res = _run(["nft", "-j", "list", "ruleset"])
        if res.returncode != 0:
            err = (res.stderr.strip().splitlines() or [""])[0]
            if "ermission denied" in err or "not permitted" in err:
                raise NotPermitted(f"`nft list ruleset` needs CAP_NET_ADMIN: {err}")
            out.notes.append(f"`nft -j list ruleset` failed ({err}): nftables rules unknown")
            out.sources["nft"] = None
        else:
            nft = parse_nft_json(res.stdout)
            out.extend(nft)
            out.sources["nft"] = "nft -j list ruleset"
            out.sources["nft_xt_rules"] = nft.sources.get("nft_xt_rules", 0)
    else:
        out.sources["nft"] = None
        out.notes.append("nft not found: nftables NAT rules unknown")
    return out

