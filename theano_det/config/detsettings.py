"""Which Theano settings make a target deterministic, read from the target's own source.

Capabilities come from what the installed files declare (does `configdefaults.py`
define `deterministic`? which values does `dnn.conv.algo_bwd_filter` accept? is the
key spelled `dnn__conv__algo_bwd_filter`? which optimizer puts cuDNN's max-pool
backward into the graph?), never from the version string. Both `theano-det patch`
(the config file) and `theano-det run` (THEANO_FLAGS) take their settings from here.

Facts checked against the released sources 0.7.0 - 1.0.5 and Theano-PyMC 1.1.2:
- `dnn.conv.algo_bwd_filter` / `algo_bwd_data` exist from 0.8; `deterministic`
  selects cuDNN ALGO_1; the default `none` (ALGO_0), `small` (ALGO_3) and the
  run-time choices `guess_*`/`time_*` may be non-deterministic.
- `deterministic` (`default`/`more`) exists from 1.0.0.
- the cuDNN max-pool gradient comes from `local_pool_dnn_grad` and
  `local_pool_dnn_grad_stride` (sandbox/cuda), `local_pool_dnn_grad_stride`
  (0.8's sandbox/gpuarray) and `local_gpua_pool_dnn_grad_stride` (gpuarray);
  excluding them leaves Theano's own, deterministic max-pool gradient kernel.
- Theano-PyMC >= 1.0.12 declares `dnn__conv__algo_bwd_filter`: in THEANO_FLAGS it is
  spelled so, and in a config file it is `algo_bwd_filter` in section `[dnn__conv]`.
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from theano_det import shipped_data
from theano_det.target import BACKENDS

ALGO_BWD_FILTER = "dnn.conv.algo_bwd_filter"
ALGO_BWD_DATA = "dnn.conv.algo_bwd_data"
ALGO_FWD = "dnn.conv.algo_fwd"
DETERMINISTIC = "deterministic"
OPTIMIZER_EXCLUDING = "optimizer_excluding"
# The flags `capabilities` reports (the others a module declares are not kept).
WANTED_FLAGS = (ALGO_BWD_FILTER, ALGO_BWD_DATA, ALGO_FWD, DETERMINISTIC, OPTIMIZER_EXCLUDING)

DETERMINISTIC_ALGO = "deterministic"  # cuDNN ALGO_1, for both backward directions
MORE = "more"
RUNTIME_CHOICE = re.compile(r"^(guess|time)_")  # guess_once, time_on_shape_change, ...
EXCLUDING_SEPARATOR = ":"  # Theano splits optimizer_excluding on ':'

# Files that declare config variables (0.7.0 declares dnn flags in sandbox/cuda/dnn.py,
# optimizer_excluding in compile/mode.py).
DECLARING_FILES = ("configdefaults.py", "compile/mode.py")
BACKEND_FOLDERS = BACKENDS
DECLARE_CALLS = {"AddConfigVar", "add"}  # AddConfigVar(name, ...) and PyMC's config.add(name, ...)
POOL_GRAD_OP = "GpuDnnPoolGrad"
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # as Python counts lines
MAX_POOL_GRAD_CLASS = re.compile(r"Max\w*Grad$")  # MaxPoolGrad, GpuDownsampleFactorMaxGrad, ...


@dataclass(frozen=True)
class Flag:
    """A config variable as the target declares it."""

    name: str  # canonical, dotted: "dnn.conv.algo_bwd_filter"
    key: str  # as the target spells it in THEANO_FLAGS: dotted, or "dnn__conv__algo_bwd_filter"
    values: tuple | None  # accepted values, the default first; () a free string; None unknown
    declared_in: str  # file inside the theano package

    @property
    def default(self) -> str | None:
        return self.values[0] if self.values else "" if self.values == () else None


@dataclass(frozen=True)
class Setting:
    """One value we want Theano to use, and where it goes in a config file."""

    name: str  # canonical dotted name
    key: str  # THEANO_FLAGS key, in the target's spelling
    value: str  # for optimizer_excluding: only our names, ':'-separated (merge with merge_excluding)
    section: str  # config file section: "global", "dnn.conv" or "dnn__conv"
    option: str
    why: str

    @property
    def merged(self) -> bool:
        """True when the value is a list to merge with the user's, not a value to replace."""
        return self.name == OPTIMIZER_EXCLUDING

    def to_json(self) -> dict:
        return {"name": self.name, "key": self.key, "value": self.value,
                "section": self.section, "option": self.option, "why": self.why}


@dataclass(frozen=True)
class Capabilities:
    flags: dict  # canonical name -> Flag, for the flags that matter here
    separator: str  # "." or "__": how the target spells nested keys
    max_pool_grad_optimizers: tuple  # optimizer names, in backend order
    dnn_backends: tuple  # backend folders with cuDNN support
    conv3d_bwd_filter: bool  # the target offers cuDNN 3-D backward-filter convolution
    files_read_nested_keys: bool  # False in 0.7.0: "a.b.c" cannot come from a config file
    problems: list = field(default_factory=list)  # source files we could not read

    def has(self, name: str) -> bool:
        return name in self.flags

    def accepts(self, name: str, value: str) -> bool:
        flag = self.flags.get(name)
        return flag is not None and flag.values is not None and (flag.values == () or value in flag.values)


def capability_sources(package_dir: Path) -> list:
    """The files, relative to the package, that `capabilities` reads."""
    return list(DECLARING_FILES) + [
        path.relative_to(package_dir).as_posix()
        for folder in dnn_backends(package_dir) for path in sorted((package_dir / folder).glob("dnn*.py"))
    ]


def dnn_backends(package_dir: Path) -> list:
    return [folder for folder in BACKEND_FOLDERS if sorted((package_dir / folder).glob("dnn*.py"))]


def package_dir_of(target) -> Path:
    """A Target, or the `theano` package folder itself."""
    return Path(getattr(target, "package_dir", target))


def capabilities(target) -> Capabilities:
    package_dir = package_dir_of(target)
    problems = []
    declared = {}
    optimizers = []
    conv3d_bwd_filter = False
    for relative in capability_sources(package_dir):
        facts = read_module(package_dir / relative, relative)
        if facts is None:
            continue
        if isinstance(facts, str):
            problems.append(facts)
            continue
        found, module_optimizers, module_conv3d = facts
        for flag in found:
            declared.setdefault(flag.name, flag)
        optimizers += [name for name in module_optimizers if name not in optimizers]
        conv3d_bwd_filter = conv3d_bwd_filter or module_conv3d
    flags = {name: declared[name] for name in WANTED_FLAGS if name in declared}
    separator = "__" if any("__" in flag.key for flag in flags.values()) else "."
    return Capabilities(
        flags=flags,
        separator=separator,
        max_pool_grad_optimizers=tuple(optimizers),
        dnn_backends=tuple(dnn_backends(package_dir)),
        conv3d_bwd_filter=conv3d_bwd_filter,
        files_read_nested_keys=reads_nested_keys_from_files(package_dir / "configparser.py"),
        problems=problems,
    )


def deterministic_settings(target, caps: Capabilities | None = None) -> list:
    """The settings that make `target` deterministic, only those it declares and accepts."""
    caps = caps or capabilities(target)
    settings = []

    def add(name: str, value: str, why: str) -> None:
        if not caps.accepts(name, value):
            return
        key = caps.flags[name].key
        section, option = file_location(key, caps.separator)
        settings.append(Setting(name, key, value, section, option, why))

    add(ALGO_BWD_FILTER, DETERMINISTIC_ALGO,
        "cuDNN backward-filter convolution: the default `none` (ALGO_0) adds with atomics; "
        "`deterministic` selects ALGO_1")
    add(ALGO_BWD_DATA, DETERMINISTIC_ALGO,
        "cuDNN backward-data convolution: the default `none` (ALGO_0) adds with atomics; "
        "`deterministic` selects ALGO_1")
    add(DETERMINISTIC, MORE,
        "Theano avoids its atomicAdd kernels (GpuAdvancedIncSubtensor1_dev20) where it can")
    if caps.max_pool_grad_optimizers and caps.has(OPTIMIZER_EXCLUDING):
        add(OPTIMIZER_EXCLUDING, EXCLUDING_SEPARATOR.join(caps.max_pool_grad_optimizers),
            "cuDNN's max-pool backward is non-deterministic; without these optimizers "
            "Theano uses its own deterministic max-pool gradient kernel")
    return settings


def deterministic_flags(target) -> dict:
    """THEANO_FLAGS-style keys (the target's spelling) -> deterministic values.

    The optimizer_excluding value holds only our names; merge it with the user's
    value with `merge_excluding`.
    """
    return {setting.key: setting.value for setting in deterministic_settings(target)}


def file_location(key: str, separator: str) -> tuple:
    """(section, option) of a key in a config file, as Theano looks it up (rsplit once)."""
    if separator in key:
        section, option = key.rsplit(separator, 1)
        return section, option
    return "global", key


def merge_excluding(user_value: str, ours: str) -> str:
    """The user's optimizer_excluding names, then each of ours not among them (the user's text kept)."""
    present = split_excluding(user_value)
    missing = [name for name in split_excluding(ours) if name not in present]
    if not missing:
        return user_value
    if not user_value.strip():
        return EXCLUDING_SEPARATOR.join(missing)
    return user_value + EXCLUDING_SEPARATOR + EXCLUDING_SEPARATOR.join(missing)


def unmerge_excluding(value: str, added: str) -> str:
    """`value` without the names in `added` (the ones merge_excluding appended), other names kept."""
    remove = set(split_excluding(added))
    return EXCLUDING_SEPARATOR.join(name for name in value.split(EXCLUDING_SEPARATOR) if name.strip() not in remove)


def split_excluding(value: str) -> list:
    return [name.strip() for name in (value or "").split(EXCLUDING_SEPARATOR) if name.strip()]


def verdict(setting_name: str, value: str, caps: Capabilities) -> str:
    """'deterministic', 'non-deterministic' or 'unknown' for an effective value of a setting."""
    if setting_name in (ALGO_BWD_FILTER, ALGO_BWD_DATA):
        return "deterministic" if value == DETERMINISTIC_ALGO else "non-deterministic"
    if setting_name == ALGO_FWD:
        # every forward algorithm is deterministic; choosing one at run time is not
        return "non-deterministic" if RUNTIME_CHOICE.match(value) else "deterministic"
    if setting_name == DETERMINISTIC:
        return "deterministic" if value == MORE else "non-deterministic"
    if setting_name == OPTIMIZER_EXCLUDING:
        missing = set(caps.max_pool_grad_optimizers) - set(split_excluding(value))
        return "non-deterministic" if missing else "deterministic"
    return "unknown"


def unfixable(target, caps: Capabilities | None = None) -> list:
    """What no setting can make deterministic in this target, in words."""
    caps = caps or capabilities(target)
    notes = []
    if caps.dnn_backends and not (caps.has(ALGO_BWD_FILTER) and caps.has(ALGO_BWD_DATA)):
        notes.append(
            "this Theano has no dnn.conv.algo_bwd_filter/algo_bwd_data flags: cuDNN convolution "
            "gradients use cuDNN's default algorithm, which adds with atomics (non-deterministic)")
    if caps.conv3d_bwd_filter:
        notes.append(
            "3-D convolution backward-filter has no deterministic cuDNN algorithm (for 3-D, "
            "Theano's cuDNN op accepts only `none` and `small`, ALGO_0 and ALGO_3, or a run-time choice)")
    runtime = sorted({value for name in (ALGO_FWD, ALGO_BWD_FILTER, ALGO_BWD_DATA) if name in caps.flags
                      for value in caps.flags[name].values or () if RUNTIME_CHOICE.match(value)})
    if runtime:
        notes.append(
            "an explicit algo= argument in the model's code (dnn_conv(..., algo=...)) overrides these "
            f"settings; the run-time choices ({', '.join(runtime)}) pick an algorithm by heuristics or "
            "timing, which may be a non-deterministic one or differ between runs")
    if caps.dnn_backends and not caps.max_pool_grad_optimizers:
        notes.append(
            "no optimizer that introduces cuDNN's max-pool backward was found, so none is excluded; "
            "a cuDNN max-pool gradient would be non-deterministic")
    if caps.dnn_backends and caps.max_pool_grad_optimizers:
        notes.append(
            "the gradient of an explicit dnn_pool(...) call in the model's code is cuDNN's "
            "max-pool backward whatever the settings (non-deterministic)")
    return notes


# --- reading the target's source -------------------------------------------------


def read_module(path: Path, relative: str):
    """(declared flags, max-pool-grad optimizer names, defines 3-D backward filter) of one file.

    None when the file does not exist, a message when it cannot be read. Cached by
    path, size and mtime: status, patch and the tests ask about the same files often.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"{path}: {error.strerror}"
    return read_module_cached(str(path), relative, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def read_module_cached(path: str, relative: str, _size: int, _mtime_ns: int):
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        return f"{path}: {error.strerror}"
    # a released file's facts come from the table of known files, without parsing it again
    known = shipped_data.module_facts(relative, raw)
    if known is None:
        return module_facts(raw, relative)
    flags, optimizers, conv3d = known
    return [Flag(*fields) for fields in flags], optimizers, conv3d


def module_facts(raw: bytes, relative: str) -> tuple:
    """What read_module returns for a file's bytes, found by parsing them (only the flags that matter here)."""
    flags, optimizers, conv3d = parse_module_facts(raw, relative)
    return [flag for flag in flags if flag.name in WANTED_FLAGS], optimizers, conv3d


def parse_module_facts(raw: bytes, relative: str) -> tuple:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old sources hold invalid escapes like "\("
            tree = ast.parse(raw, filename=relative)
    except (SyntaxError, ValueError):  # Python 2 source (0.7.0's print statements)
        return declared_flags_in_text(raw.decode("utf-8", "replace"), relative), [], False
    if not relative.split("/")[-1].startswith("dnn"):
        return declared_flags(tree, relative), [], False
    text = raw.decode("utf-8", "replace")
    return declared_flags(tree, relative), max_pool_grad_optimizers(tree, text), defines_function(tree, "dnn_gradweight3d")


def declared_flags(tree: ast.Module, relative: str) -> list:
    """Every `AddConfigVar('name', doc, Param(...))` / `config.add("name", doc, Param(...))` in a module."""
    constants = module_constants(tree)
    flags = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and called_name(node.func) in DECLARE_CALLS and len(node.args) >= 3):
            continue
        key = string_value(node.args[0])
        if key is None:
            continue
        param = node.args[2]
        values = ()
        if isinstance(param, ast.Call) and called_name(param.func) == "EnumStr":
            values = enum_values(param.args, constants)
        flags.append(Flag(key.replace("__", "."), key, values, relative))
    return flags


TEXT_DECLARATION = re.compile(r"""AddConfigVar\(\s*(['"])([\w.]+)\1""")
LITERAL_ENUM = re.compile(r"""EnumStr\(((?:\s*(?:'[^'\\]*'|"[^"\\]*")\s*,?)*)\s*(?:\)|\w+\s*=)""")
STRING_LITERAL = re.compile(r"'([^'\\]*)'" r'|"([^"\\]*)"')


def declared_flags_in_text(text: str, relative: str) -> list:
    """The declarations of a file ast cannot parse (Python 2), by pattern.

    An EnumStr whose values are not all literals is recorded with unknown values,
    so that nothing is ever written for it.
    """
    matches = list(TEXT_DECLARATION.finditer(text))
    flags = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end():end]
        values: tuple | None = ()
        if "EnumStr(" in body:
            enum = LITERAL_ENUM.search(body)
            values = None if enum is None else tuple(a or b for a, b in STRING_LITERAL.findall(enum.group(1)))
        key = match.group(2)
        flags.append(Flag(key.replace("__", "."), key, values, relative))
    return flags


def enum_values(args: list, constants: dict) -> tuple | None:
    """EnumStr('a', 'b', *LIST) (Theano) and EnumStr('a', LIST) (Theano-PyMC) alike; None if not literal."""
    values = []
    for arg in args:
        found = expression_strings(arg.value if isinstance(arg, ast.Starred) else arg, constants)
        if found is None:
            return None
        values += [value for value in found if value not in values]
    return tuple(values)


def expression_strings(node: ast.AST, constants: dict, depth: int = 0) -> list | None:
    """The strings of a constant, a tuple/list of them, a module-level name, or a sum of those."""
    if depth > 20:
        return None
    if string_value(node) is not None:
        return [string_value(node)]
    parts = None
    if isinstance(node, (ast.Tuple, ast.List)):
        parts = node.elts
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
    elif isinstance(node, ast.Name) and node.id in constants:
        parts = [constants[node.id]]
    if parts is None:
        return None
    strings = []
    for part in parts:
        found = expression_strings(part, constants, depth + 1)
        if found is None:
            return None
        strings += found
    return strings


def module_constants(tree: ast.Module) -> dict:
    """Module-level `NAME = expression` assignments (the SUPPORTED_DNN_CONV_* tuples)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            constants[node.targets[0].id] = node.value
    return constants


def max_pool_grad_optimizers(tree: ast.Module, text: str | None = None) -> list:
    """Names under which a module registers an optimizer that turns a max-pool gradient into GpuDnnPoolGrad.

    Two registration styles exist: a decorated function (`@register_opt('cudnn')`
    `@local_optimizer([MaxPoolGrad])`: the name is the function's) and
    `pool_db.register("name", op_lifter([MaxPoolGrad])(function), ...)`.
    """
    # With the source at hand, only functions whose lines name the op are walked (the slow part).
    lines = None if text is None else [
        number for number, line in enumerate(LINE_BREAK.split(text), 1) if POOL_GRAD_OP in line]
    makers = {
        node.name: node for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and (lines is None or any(node.lineno <= number <= node.end_lineno for number in lines))
        and calls(node, POOL_GRAD_OP)
    }
    names = []
    for function in makers.values():
        decorators = [names_in(decorator) for decorator in function.decorator_list]
        if any(any(MAX_POOL_GRAD_CLASS.search(name) for name in found) for found in decorators) and any(
            any("register" in name for name in found) for found in decorators
        ):
            names.append(function.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and called_name(node.func) == "register" and len(node.args) >= 2:
            name, registered = string_value(node.args[0]), names_in(node.args[1])
            function = next((makers[found] for found in registered if found in makers), None)
            if (name and function is not None and name not in names
                    and any(MAX_POOL_GRAD_CLASS.search(found) for found in registered)):
                names.append(name)
    return names


def calls(function: ast.FunctionDef, callee: str) -> bool:
    return any(isinstance(node, ast.Call) and callee in names_in(node.func) for node in ast.walk(function))


def defines_function(tree: ast.Module, name: str) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in ast.walk(tree))


def names_in(node: ast.AST) -> set:
    """Every identifier (names and attribute names) inside an expression."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
    return found


def called_name(func: ast.AST) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def string_value(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def reads_nested_keys_from_files(configparser_py: Path) -> bool:
    """0.7.0 splits a key on every '.', so `dnn.conv.x` is never looked up in a config file."""
    try:
        text = configparser_py.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    return not re.search(r"key_tokens\s*=\s*key\.split\(\s*['\"]\.['\"]\s*\)", text)
