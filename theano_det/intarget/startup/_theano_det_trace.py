"""`theano-det trace`, the part inside the target: fingerprint every node of every compiled function.

Runs inside the target interpreter (Python 3.5+, stdlib only at start-up; numpy
and Theano are used once the program has imported them). The `run` bootstrap
(sitecustomize.py) activates it when the host sets:

    THEANO_DET_TRACE            the trace file to write
    THEANO_DET_TRACE_CALLS      which calls of each function to trace: "1-3", "1-5,100", "all"
    THEANO_DET_TRACE_FUNCTIONS  an fnmatch pattern on a function's name, key or "file:line"
    THEANO_DET_TRACE_KEEP       bytes of node outputs to keep besides their fingerprints (0: none)

The trace is JSON lines (_theano_det_jsonlines.py), one record per line, each written with
one write() as it happens, so a killed process leaves every record it finished:

    header       format, version, interpreter, seed, what is traced
    environment  as `verify` describes it (Theano, numpy, device, settings); before the first function
    function     one per compiled function: its key (compilation order + a hash of the graph's
                 structure), where the program compiled it, and each node's op and user line
    value        a kept output: dtype, shape and the bytes (base64), for `diff`'s differences
    call         one per traced call: for each node in execution order, its inputs' and
                 outputs' fingerprints; `within` names the node running it (scan's inner calls)
    end          the process exited normally (absent when it was killed)

A traced call runs the function's nodes here, one by one, in the linker's order
(the thunks the linker made, the same C or Python code); the CVM, written in C,
has no per-node callback. Other calls run the linker's own loop; once the last
selected call has run, the function gets its linker's loop back untouched.
"""

import atexit
import base64
import fnmatch
import hashlib
import os
import re
import sys
import weakref

import _theano_det_compile_hook as compile_hook
from _theano_det_jsonlines import JsonLinesFile

TRACE_VARIABLE = "THEANO_DET_TRACE"
CALLS_VARIABLE = "THEANO_DET_TRACE_CALLS"
FUNCTIONS_VARIABLE = "THEANO_DET_TRACE_FUNCTIONS"
KEEP_VARIABLE = "THEANO_DET_TRACE_KEEP"
VARIABLES = (TRACE_VARIABLE, CALLS_VARIABLE, FUNCTIONS_VARIABLE, KEEP_VARIABLE)

FORMAT = "theano-det-trace"
VERSION = 1
DEFAULT_CALLS = "1-3"
MAX_KEPT_VALUE = 4 * 1024 * 1024  # bytes; a larger output keeps only its fingerprint
DIGEST_CHARS = 32  # hex digits of sha256 kept per fingerprint (128 bits)
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Ops whose outputs are memory left as it was (a buffer for another op to fill): their
# content is not a result, so only its shape and dtype are recorded.
UNINITIALIZED_OPS = ("AllocEmpty", "GpuAllocEmpty")
# Frames in these packages are not the user's line.
LIBRARY_PACKAGES = ("theano", "keras", "lasagne")

_tracer = None


def parse_calls(spec):
    """"1-5,100" -> ([(1, 5), (100, 100)], 100); "all" -> ([(1, None)], None)."""
    spec = (spec or DEFAULT_CALLS).strip()
    if spec == "all":
        return [(1, None)], None
    ranges = []
    for part in spec.split(","):
        low, dash, high = part.strip().partition("-")
        low = int(low)
        high = None if dash and not high.strip() else int(high) if dash else low
        if low < 1 or (high is not None and high < low):
            raise ValueError("bad call range %r" % part)
        ranges.append((low, high))
    highs = [high for _, high in ranges]
    return ranges, (None if None in highs else max(highs))


def selected(ranges, number):
    for low, high in ranges:
        if number >= low and (high is None or number <= high):
            return True
    return False


def activate():
    """Start tracing as the environment says; the variables are removed so that
    programs this one starts do not write into the same trace."""
    global _tracer
    path = os.environ.get(TRACE_VARIABLE)
    if not path or _tracer is not None:
        return None
    settings = dict((name, os.environ.pop(name, None)) for name in VARIABLES)
    _tracer = Tracer(path, settings[CALLS_VARIABLE] or DEFAULT_CALLS, settings[FUNCTIONS_VARIABLE] or "*",
                     int(settings[KEEP_VARIABLE] or 0))
    compile_hook.add_listener(_tracer)
    atexit.register(_tracer.finish)
    return _tracer


# --- fingerprints ---------------------------------------------------------------------


def digest(*chunks):
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()[:DIGEST_CHARS]


def host_array(value, numpy):
    """The value as a C-contiguous numpy array (GPU arrays are copied to the host), or None."""
    if isinstance(value, (numpy.ndarray, numpy.generic, int, float, bool, complex)) or (
            hasattr(value, "__array__") and not hasattr(value, "tocsr")):  # pygpu, CudaNdarray
        return numpy.asarray(value, order="C")  # a copy only where the layout is not C order
    return None


def raw_bytes(array, numpy):
    """The array's bytes, without a copy."""
    return array.reshape(-1).view(numpy.uint8) if array.size and array.dtype.itemsize else b""


def fingerprint(value):
    """(text, host array or None): the exact content of a value, its shape and dtype."""
    if value is None:
        return "None", None
    numpy = sys.modules.get("numpy")
    array = host_array(value, numpy) if numpy is not None else None
    if array is not None:
        shape = ",".join(str(int(n)) for n in array.shape)
        if array.dtype.hasobject:
            return "%s[%s]#%s" % (array.dtype, shape, digest(repr(array.tolist()).encode("utf-8"))), None
        return "%s[%s]#%s" % (array.dtype, shape, digest(raw_bytes(array, numpy))), array
    kind = type(value).__name__
    if hasattr(value, "get_state"):  # numpy RandomState (RandomStreams' state variables)
        state = value.get_state()
        return "%s#%s" % (kind, digest(repr(state[0]).encode(), numpy.ascontiguousarray(state[1]).tobytes(),
                                       repr(state[2:]).encode())), None
    if hasattr(value, "tocsr") and numpy is not None:  # scipy sparse
        csr = value.tocsr()
        return "%s%s#%s" % (kind, list(csr.shape), digest(
            numpy.ascontiguousarray(csr.data).tobytes(), numpy.ascontiguousarray(csr.indices).tobytes(),
            numpy.ascontiguousarray(csr.indptr).tobytes())), None
    if isinstance(value, (list, tuple)):
        return "%s#%s" % (kind, digest(*[fingerprint(item)[0].encode() for item in value])), None
    return "%s#%s" % (kind, digest(ADDRESS.sub("", repr(value)).encode("utf-8"))), None


# --- what a graph is ---------------------------------------------------------------------


def op_text(op):
    """The op and its parameters, without memory addresses."""
    cls = type(op)
    props = getattr(op, "__props__", None)
    if props:
        params = ",".join("%s=%r" % (name, getattr(op, name, None)) for name in props)
        text = "%s.%s(%s)" % (cls.__module__, cls.__name__, params)
    else:
        text = "%s.%s:%s" % (cls.__module__, cls.__name__, op)
    return ADDRESS.sub("", text)


def structural_hash(fgraph, order):
    """A hash of the ops, their parameters, the types and how the nodes are wired;
    the same in every run that compiles the same graph."""
    names = {}
    for number, variable in enumerate(fgraph.inputs):
        names[variable] = "in%d:%s" % (number, variable.type)
    lines = []
    for position, node in enumerate(order):
        inputs = []
        for variable in node.inputs:
            if variable in names:
                inputs.append(names[variable])
            elif hasattr(variable, "data"):  # a constant
                inputs.append("const:%s:%s" % (variable.type, fingerprint(variable.data)[0]))
            else:
                inputs.append("?:%s" % variable.type)
        lines.append("%s(%s)" % (op_text(node.op), ",".join(inputs)))
        for number, variable in enumerate(node.outputs):
            names[variable] = "n%d.%d:%s" % (position, number, variable.type)
    lines.append("outputs(%s)" % ",".join(names.get(out, "const:%s" % out.type) for out in fgraph.outputs))
    return digest("\n".join(lines).encode("utf-8"))


def library_dirs():
    dirs = []
    for name in LIBRARY_PACKAGES + ("theano_det",):
        module = sys.modules.get(name)
        if getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    dirs.append(os.path.dirname(os.path.abspath(__file__)) + os.sep)
    return tuple(dirs)


def caller_line():
    """'file:line' of the program's call that compiled the function (outside Theano, Keras, Lasagne)."""
    skipped = library_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(skipped) and not frame.f_code.co_filename.startswith("<frozen"):
            return "%s:%d" % (frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


def node_info(node, sources, rules, audit):
    info = {"op": ADDRESS.sub("", str(node.op)),
            "class": "%s.%s" % (type(node.op).__module__, type(node.op).__name__),
            "line": audit.user_line(node),
            "from": [sources.get(variable, "c") for variable in node.inputs]}
    rule, _ = audit.first_matching_rule(rules, node)
    if rule is not None:
        info["rule"] = rule["id"]
    if type(node.op).__name__.startswith("GpuDnnConv"):
        algo = audit.node_attribute(node, "algo")
        if algo is not audit._MISSING:
            info["algo"] = str(algo)
    if audit.inner_nodes(node.op):
        info["inner"] = True
    return info


# --- the tracer -------------------------------------------------------------------------


class Tracer(JsonLinesFile):
    def __init__(self, path, calls, pattern, keep_bytes):
        JsonLinesFile.__init__(self, path)  # self.lock also guards the tracer's own state
        self.path = path
        self.calls, self.last_call = parse_calls(calls)
        self.pattern = pattern
        self.keep_left = keep_bytes
        self.kept = set()
        self.compiled = 0
        self.traced_calls = 0
        self.running = []  # (key, call, position) of the traced nodes running now, outermost first
        self.environment_written = False
        self.rules = None
        self.write({"t": "header", "format": FORMAT, "version": VERSION,
                    "python": "%d.%d.%d" % sys.version_info[:3],
                    "seed": os.environ.get("THEANO_DET_SEED"), "calls": calls, "functions": pattern,
                    "keep_values": keep_bytes})

    def finish(self):
        self.write({"t": "end", "functions": self.compiled, "calls": self.traced_calls})

    # compile_hook listener

    def before_create(self, maker):
        with self.lock:
            vars(maker)["_theano_det_index"] = self.compiled
            self.compiled += 1

    def after_create(self, maker, function, linked):
        try:
            self.add_function(maker, function, linked)
        except Exception as error:  # the program must run on: say what is missing from the trace
            sys.stderr.write("theano-det trace: function %r is not traced: %r\n"
                             % (getattr(function, "name", None), error))

    def add_function(self, maker, function, linked):
        import theano

        audit = compile_hook.intarget_module("graph_audit")
        with self.lock:
            if not self.environment_written:
                self.environment_written = True
                probe = compile_hook.intarget_module("verify_probe")
                environment = probe.describe_environment(theano)
                for name in ("linker", "cxx", "allow_gc"):  # they choose the code each node runs
                    environment["settings"][name] = probe.config_value(theano.config, name)
                self.write(dict({"t": "environment"}, **environment))
            if self.rules is None:
                self.rules = audit.load_rules()
        order = linked.get("order") or []
        thunks = linked.get("thunks") or []
        index = vars(maker).get("_theano_det_index", 0)
        key = "%d-%s" % (index, structural_hash(maker.fgraph, order)[:12])
        where = caller_line()
        sources = input_sources(maker.fgraph, order)
        name = getattr(function, "name", None)
        traced = any(fnmatch.fnmatchcase(text, self.pattern) for text in (key, name, where) if text)
        problem = None
        if len(order) != len(thunks) or not all(hasattr(thunk, "inputs") for thunk in thunks):
            problem = "the linker (%s) has no thunk per node" % type(maker.linker).__name__
        self.write({"t": "function", "key": key, "index": index, "name": name, "where": where,
                    "linker": type(maker.linker).__name__, "traced": traced and problem is None,
                    "problem": problem, "inputs": [str(variable) for variable in maker.fgraph.inputs],
                    "nodes": [node_info(node, sources, self.rules, audit) for node in order]})
        if traced and problem is None:
            function.fn = TracedFunction(self, key, function, maker, thunks, order)

    def keep(self, text, array):
        """Write the value of a node output (once per content, while the budget lasts)."""
        if array is None or text in self.kept or array.nbytes > min(self.keep_left, MAX_KEPT_VALUE):
            return
        self.kept.add(text)
        self.keep_left -= array.nbytes
        self.write({"t": "value", "fp": text, "dtype": str(array.dtype), "shape": list(array.shape),
                    "data": base64.b64encode(array.tobytes()).decode("ascii")})


def input_sources(fgraph, order):
    """Where each variable comes from: "i2" (the function's input 2), "n5.0" (output 0 of node 5)."""
    sources = dict((variable, "i%d" % number) for number, variable in enumerate(fgraph.inputs))
    for position, node in enumerate(order):
        for number, variable in enumerate(node.outputs):
            sources[variable] = "n%d.%d" % (position, number)
    return sources


class _All(object):
    """Every input and output of an op that leaves its output uninitialized."""

    def __contains__(self, index):
        return True


ALL = _All()


def uninitialized_parts(order):
    """Per node: (inputs, outputs) whose content is uninitialized memory, as sets of indices
    (ALL for an AllocEmpty). Such memory stays so through the views and in-place updates
    of other ops (a set_subtensor fills part of it), until an op with an inner graph (scan)
    fills it."""
    made = set()
    found = []
    for node in order:
        if type(node.op).__name__ in UNINITIALIZED_OPS:
            made.update(node.outputs)
            found.append((ALL, ALL))
            continue
        inputs = frozenset(index for index, variable in enumerate(node.inputs) if variable in made)
        outputs = set()
        if inputs and not hasattr(node.op, "fn") and not getattr(node.op, "outputs", None):
            for mapping in (getattr(node.op, "destroy_map", None) or {}, getattr(node.op, "view_map", None) or {}):
                for output, sources in mapping.items():
                    if inputs.intersection(sources):
                        outputs.add(output)
                        made.add(node.outputs[output])
        found.append((inputs, frozenset(outputs)))
    return found


def shape_only(value):
    return "uninitialized:%s[%s]" % (getattr(value, "dtype", type(value).__name__),
                                     ",".join(str(int(n)) for n in getattr(value, "shape", ())))


def gc_clears(vm, fgraph, order):
    """The storage cells to empty after each node, as the linker's own loop would (allow_gc)."""
    given = getattr(vm, "post_thunk_clear", None)
    if given:
        return given
    if not getattr(vm, "allow_gc", False) or not hasattr(vm, "storage_map"):
        return [()] * len(order)
    from theano.gof.link import gc_helper

    computed, last_user = gc_helper(order)
    outputs = set(fgraph.outputs)
    return [[vm.storage_map[variable] for variable in node.inputs
             if variable in computed and variable not in outputs and last_user[variable] is node]
            for node in order]


def pre_call_clears(vm, maker):
    given = getattr(vm, "pre_call_clear", None)
    if given is not None:
        return given
    no_recycling = getattr(maker.linker, "no_recycling", None)
    if not isinstance(no_recycling, (list, tuple)) or not hasattr(vm, "storage_map"):
        return []
    inputs = set(maker.fgraph.inputs)
    return [vm.storage_map[variable] for variable in no_recycling if variable not in inputs]


class TracedFunction(object):
    """Stands in for a Function's `fn` (its linker's loop): counts the calls, traces the selected
    ones node by node and hands the others to the loop. Attributes are the loop's."""

    def __init__(self, tracer, key, function, maker, thunks, order):
        vm = function.fn
        self.__dict__.update(
            _td_tracer=tracer, _td_key=key, _td_vm=vm, _td_function=weakref.ref(function),
            _td_thunks=thunks, _td_order=order, _td_calls=0, _td_traced_last=False, _td_error_at=None,
            _td_clears=gc_clears(vm, maker.fgraph, order), _td_pre_clears=pre_call_clears(vm, maker),
            _td_uninitialized=uninitialized_parts(order))

    def __getattr__(self, name):
        return getattr(self.__dict__["_td_vm"], name)

    def __setattr__(self, name, value):
        if name.startswith("_td_"):
            self.__dict__[name] = value
        else:
            setattr(self._td_vm, name, value)

    @property
    def need_update_inputs(self):
        # The CVM updates shared variables itself; after a call traced here, Function must.
        return True if self._td_traced_last else getattr(self._td_vm, "need_update_inputs", True)

    @property
    def position_of_error(self):
        if self._td_error_at is not None:
            return self._td_error_at
        return self._td_vm.position_of_error

    def __call__(self, output_subset=None):
        tracer = self._td_tracer
        self._td_calls += 1
        number = self._td_calls
        self._td_error_at = None
        if selected(tracer.calls, number) and os.getpid() == tracer.pid:
            self._td_traced_last = True
            return self._td_trace(number)
        self._td_traced_last = False
        if tracer.last_call is not None and number >= tracer.last_call:
            function = self._td_function()
            if function is not None and function.__dict__.get("fn") is self:
                function.fn = self._td_vm  # nothing more to trace: the loop runs untouched
        vm = self._td_vm
        return vm() if output_subset is None else vm(output_subset=output_subset)

    def _td_trace(self, number):
        tracer = self._td_tracer
        key = self._td_key
        within = list(tracer.running[-1]) if tracer.running else None
        nodes = []
        kept = []
        keep = tracer.keep_left > 0
        for cell in self._td_pre_clears:
            cell[0] = None
        position = 0
        try:
            for position, thunk in enumerate(self._td_thunks):
                unset_inputs, unset_outputs = self._td_uninitialized[position]
                inputs = [shape_only(cell[0]) if index in unset_inputs else fingerprint(cell[0])[0]
                          for index, cell in enumerate(thunk.inputs)]
                tracer.running.append((key, number, position))
                try:
                    requires = thunk()
                finally:
                    tracer.running.pop()
                if requires:  # a lazy op (ifelse) asked for inputs the order did not compute
                    raise RuntimeError("theano-det trace: node %d (%s) of %s is lazy and needs inputs %r "
                                       "that the linker's order did not compute"
                                       % (position, self._td_order[position].op, key, requires))
                outputs = []
                for index, cell in enumerate(thunk.outputs):
                    if index in unset_outputs:
                        outputs.append(shape_only(cell[0]))
                        continue
                    text, array = fingerprint(cell[0])
                    outputs.append(text)
                    if keep:
                        kept.append((text, array))
                nodes.append([inputs, outputs])
                for cell in self._td_clears[position]:
                    cell[0] = None
        except BaseException as error:
            self._td_error_at = position
            self._td_write(number, within, nodes, kept, error="%s: %s" % (type(error).__name__, error))
            if hasattr(self._td_vm, "position_of_error"):
                raise  # Function.__call__ names the node (position_of_error)
            from theano.gof.link import raise_with_op

            raise_with_op(self._td_order[position], self._td_thunks[position])
        self._td_write(number, within, nodes, kept)
        return None

    def _td_write(self, number, within, nodes, kept, error=None):
        tracer = self._td_tracer
        with tracer.lock:
            for text, array in kept:
                tracer.keep(text, array)
            record = {"t": "call", "key": self._td_key, "call": number, "within": within, "nodes": nodes}
            if error is not None:
                record["error"] = error
            tracer.traced_calls += 1
            tracer.write(record)
