"""Render a binding plan: the Mochi shim, the Python sidecar (.py + .pyi), the wrapper's C
source (limited API) and SKIPPED.txt. Every output is a pure function of the plan: no
timestamps, items sorted, so two runs give byte-identical files."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mochi_pybridge.runners.bindings.mochi_types import (
    Function,
    ListOf,
    MapOf,
    MochiType,
    Opaque,
    Optional,
    Record,
    Scalar,
    SetOf,
    TupleOf,
)
from mochi_pybridge.runners.bindings.synthesize import FunctionPlan, Plan

LIMITED_API = "0x030B0000"  # CPython 3.11, the oldest we support: one build for every later minor


@dataclass(frozen=True)
class Outputs:
    shim: str
    sidecar: str
    sidecar_stub: str
    c_source: str
    skipped: str


def _c_string(text: str) -> str:
    return json.dumps(text)  # a valid C string literal for ASCII/UTF-8 text


def _unique(functions: list[FunctionPlan]) -> list[FunctionPlan]:
    seen: set[str] = set()
    out = []
    for f in functions:
        if f.mochi_name not in seen:
            seen.add(f.mochi_name)
            out.append(f)
    return out


# -- shim -------------------------------------------------------------------------------------


def render_shim(plan: Plan, package: str, version: str) -> str:
    functions = _unique(plan.functions)
    records = {n: r for n, r in plan.records.items() if r.fields}
    opaque = sorted(set(plan.opaques) | {n for n, r in plan.records.items() if not r.fields})
    count = len(functions) + len(plan.variables) + len(records) + len(opaque)
    lines = [
        f"// mochi-pybridge shim for {package} {version} — {count} items, {len(plan.skipped)} skipped",
        "// Generated: do not edit. Refused items and how to override them: SKIPPED.txt",
        f'import python "{plan.module}" as {plan.alias}',
        "",
    ]
    lines += [f"extern type {name}" for name in opaque]
    for name in sorted(records):
        fields = ", ".join(f"{f}: {t.mochi()}" for f, t in records[name].fields)
        lines.append(f"type {name} {{ {fields} }}")
    if opaque or records:
        lines.append("")
    for var in plan.variables:
        lines.append(f"extern var {plan.alias}.{var.mochi_name}: {var.type.mochi()}")
    for func in functions:
        params = ", ".join(f"{p.mochi_name}: {p.type.mochi()}" for p in func.params)
        ret = f": {func.result.mochi()}" if func.result is not None else ""
        lines.append(f"extern fun {plan.alias}.{func.mochi_name}({params}){ret}")
    return "\n".join(lines).rstrip() + "\n"


# -- sidecar ----------------------------------------------------------------------------------


def _py_type(t: MochiType | None) -> str:
    if t is None:
        return "None"
    if isinstance(t, Scalar):
        return {
            "int": "int",
            "bigint": "int",
            "float": "float",
            "bool": "bool",
            "string": "str",
            "bytes": "bytes",
            "any": "object",
        }[t.name]
    if isinstance(t, ListOf):
        return f"list[{_py_type(t.item)}]"
    if isinstance(t, SetOf):
        return f"set[{_py_type(t.item)}]"
    if isinstance(t, MapOf):
        return f"dict[{_py_type(t.key)}, {_py_type(t.value)}]"
    if isinstance(t, TupleOf):
        return "tuple[" + ", ".join(_py_type(i) for i in t.items) + "]"
    if isinstance(t, Optional):
        return f"{_py_type(t.inner)} | None"
    if isinstance(t, Function):
        return "Callable[..., object]"
    if isinstance(t, Record):
        return "dict[str, object]"
    if isinstance(t, Opaque):
        return t.name
    raise TypeError(t)


def _shape(t: MochiType | None) -> object:
    """Where a value of type ``t`` needs converting on its way to Mochi (iterators become
    lists, records become dicts, at any depth); None: nowhere."""
    if isinstance(t, ListOf | SetOf):
        return ("L" if isinstance(t, ListOf) else "S", _shape(t.item))
    if isinstance(t, MapOf):
        inner = _shape(t.value)
        return ("M", inner) if inner is not None else None
    if isinstance(t, Optional):
        inner = _shape(t.inner)
        return ("O", inner) if inner is not None else None
    if isinstance(t, TupleOf):
        items = [_shape(i) for i in t.items]
        return ("T", tuple(items)) if any(i is not None for i in items) else None
    if isinstance(t, Record):
        python = t.python_names or tuple(name for name, _ in t.fields)
        return (
            "R",
            tuple((name, py, _shape(ft)) for (name, ft), py in zip(t.fields, python, strict=True)),
        )
    return None


def _arg_shape(t: MochiType | None, plan: Plan) -> object:
    """Where an argument of type ``t`` needs converting on its way to Python: records arrive
    as dicts keyed by Mochi field names and become the package's own record type, at any
    depth; None: nowhere."""
    if isinstance(t, ListOf | SetOf):
        inner = _arg_shape(t.item, plan)
        return ("L" if isinstance(t, ListOf) else "S", inner) if inner is not None else None
    if isinstance(t, MapOf):
        inner = _arg_shape(t.value, plan)
        return ("M", inner) if inner is not None else None
    if isinstance(t, Optional):
        return _arg_shape(t.inner, plan)  # None passes through unchanged
    if isinstance(t, TupleOf):
        items = [_arg_shape(i, plan) for i in t.items]
        return ("T", tuple(items)) if any(i is not None for i in items) else None
    if isinstance(t, Record):
        python = t.python_names or tuple(name for name, _ in t.fields)
        kind = plan.record_kinds.get(t.name, ("typeddict", ""))[0]
        fields = tuple(
            (name, py, _arg_shape(ft, plan))
            for (name, ft), py in zip(t.fields, python, strict=True)
        )
        return ("R", (t.name, kind, fields))
    return None


def _convert_result(t: MochiType | None, plan: Plan) -> str:
    """Python expression turning ``_mochi_r_`` into what the wrapper checks against ``t``."""
    shape = _shape(t)
    return "_mochi_r_" if shape is None else f"_convert(_mochi_r_, {shape!r})"


def render_sidecar(plan: Plan, package: str, version: str, *, async_mode: str = "per-call") -> str:
    lines = [
        f'"""Sidecar of the Mochi bindings for {package} {version} (module {plan.module}).',
        "",
        "Generated by mochi-pybridge: do not edit. The compiled wrapper _mochi_* calls these",
        'entries and checks their arguments and results against the declared Mochi types."""',
        "",
        "import asyncio as _asyncio",
        "import dataclasses as _dataclasses",
        "import importlib as _importlib",
        "",
        f"_mochi_module_ = _importlib.import_module({plan.module!r})",
        "",
        "",
        "def _resolve(qualname):",
        '    """The runtime class; a stub-only one (a Protocol, say) checks as any object."""',
        '    module, _, name = qualname.rpartition(".")',
        "    return getattr(_importlib.import_module(module), name, object)",
        "",
        "",
        "def _convert(value, shape):",
        '    """Iterators to lists, sets to sets, records (NamedTuple, dataclass, TypedDict) to',
        '    dicts, at any depth; anything else is left for the wrapper to check."""',
        "    if shape is None or value is None:",
        "        return value",
        "    kind, inner = shape",
        '    if kind == "L":',
        "        if isinstance(value, (str, bytes, dict)):",
        "            return value",
        "        return [_convert(v, inner) for v in value]",
        '    if kind == "S":',
        "        if isinstance(value, (str, bytes, dict)):",
        "            return value",
        "        return {_convert(v, inner) for v in value}",
        '    if kind == "M":',
        "        return {k: _convert(v, inner) for k, v in value.items()} if isinstance(value, dict) else value",
        '    if kind == "O":',
        "        return _convert(value, inner)",
        '    if kind == "T":',
        "        if not isinstance(value, tuple) or len(value) != len(inner):",
        "            return value",
        "        return tuple(_convert(v, s) for v, s in zip(value, inner))",
        "    # a record: keys become the Mochi field names (reserved words renamed)",
        "    if isinstance(value, dict):",
        "        record = value",
        '    elif hasattr(value, "_asdict"):',
        "        record = dict(value._asdict())",
        "    else:",
        "        record = {py: getattr(value, py) for _, py, _ in inner if hasattr(value, py)}",
        "    return {name: _convert(record[py], s) for name, py, s in inner if py in record}",
        "",
        "",
        "def _to_python(value, shape):",
        '    """The way back: records arrive as dicts keyed by Mochi field names and become the',
        "    package's own record (a TypedDict's dict, a NamedTuple or dataclass instance), at",
        '    any depth; anything else is passed as it came."""',
        "    if shape is None or value is None:",
        "        return value",
        "    kind, inner = shape",
        '    if kind == "L" and isinstance(value, list):',
        "        return [_to_python(v, inner) for v in value]",
        '    if kind == "S" and isinstance(value, (set, frozenset)):',
        "        return {_to_python(v, inner) for v in value}",
        '    if kind == "M" and isinstance(value, dict):',
        "        return {k: _to_python(v, inner) for k, v in value.items()}",
        '    if kind == "T" and isinstance(value, (tuple, list)) and len(value) == len(inner):',
        "        return tuple(_to_python(v, s) for v, s in zip(value, inner))",
        '    if kind == "R" and isinstance(value, dict):',
        "        name, record_kind, fields = inner",
        "        data = {py: _to_python(value[field], s) for field, py, s in fields if field in value}",
        "        cls = globals().get(name, object)",
        '        if record_kind == "typeddict" or cls is object:',
        "            return data",
        "        return cls(**data)",
        "    return value",
        "",
        "",
    ]
    exported: list[str] = []
    classes: dict[str, str] = {}
    for name, qualname in sorted(
        {**plan.opaques, **{n: k[1] for n, k in plan.record_kinds.items()}}.items()
    ):
        classes[name] = qualname
        lines.append(f"{name} = _resolve({qualname!r})")
        exported.append(name)
    if classes:
        lines += ["", ""]
    if plan.functions and any(f.is_async for f in plan.functions):
        if async_mode == "persistent":
            # One loop for the process: loop-bound objects survive between calls (MEP-71 R8).
            lines += [
                "_LOOP = None",
                "",
                "",
                "def _run(coro):",
                "    global _LOOP",
                "    if _LOOP is None:",
                "        _LOOP = _asyncio.new_event_loop()",
                "    return _LOOP.run_until_complete(coro)",
                "",
                "",
            ]
        else:  # per-call: a fresh loop each time, nothing leaks between calls
            lines += ["def _run(coro):", "    return _asyncio.run(coro)", "", ""]
    for var in plan.variables:
        lines.append(f"{var.mochi_name} = getattr(_mochi_module_, {var.python_name!r})")
        exported.append(var.mochi_name)
    if plan.variables:
        lines += ["", ""]
    for func in _unique(plan.functions):
        exported.append(func.mochi_name)
        names = [
            p.python_name if p.python_name.isidentifier() else f"_p{i}"
            for i, p in enumerate(func.params)
        ]
        signature = ", ".join(names)
        lines.append(f"def {func.mochi_name}({signature}):")
        for param, local in zip(func.params, names, strict=True):
            shape = _arg_shape(param.type, plan)
            if shape is not None:
                lines.append(f"    {local} = _to_python({local}, {shape!r})")
        positional = []
        keywords = []
        for param, local in zip(func.params, names, strict=True):
            if param.mochi_name == "self_" and func.kind in ("method", "getter"):
                continue
            if param.optional:
                if param.keyword:
                    keywords.append((param.python_name, local))
                continue
            positional.append(local)
        lines.append("    _mochi_kw_ = {}")
        for python_name, local in keywords:
            lines.append(f"    if {local} is not None:")
            lines.append(f"        _mochi_kw_[{python_name!r}] = {local}")
        args = ", ".join([*positional, "**_mochi_kw_"])
        self_name = names[0] if func.kind in ("method", "getter") and names else "self_"
        if func.kind == "function":
            call = f"_mochi_module_.{func.target}({args})"
        elif func.kind == "constructor":
            assert isinstance(func.result, Opaque)
            call = f"{func.result.name}({args})"
        elif func.kind == "getter":
            call = f"{self_name}.{func.target.split('.', 1)[1]}"
        else:
            call = f"{self_name}.{func.target.split('.', 1)[1]}({args})"
        if func.is_async:
            call = f"_run({call})"
        lines.append(f"    _mochi_r_ = {call}")
        lines.append(f"    return {_convert_result(func.result, plan)}")
        lines += ["", ""]
    lines.append(f"__all__ = {sorted(exported)!r}")
    return "\n".join(lines).rstrip() + "\n"


def render_sidecar_stub(plan: Plan) -> str:
    lines = [
        "# Generated by mochi-pybridge: the typed surface of the sidecar.",
        "from collections.abc import Callable",
        "",
    ]
    for name in sorted({**plan.opaques, **plan.record_kinds}):
        lines.append(f"class {name}: ...")
    for var in plan.variables:
        lines.append(f"{var.mochi_name}: {_py_type(var.type)}")
    for func in _unique(plan.functions):
        params = ", ".join(
            f"{p.python_name if p.python_name.isidentifier() else f'_p{i}'}: {_py_type(p.type)}"
            for i, p in enumerate(func.params)
        )
        lines.append(f"def {func.mochi_name}({params}) -> {_py_type(func.result)}: ...")
    return "\n".join(lines) + "\n"


# -- SKIPPED.txt ------------------------------------------------------------------------------


def render_skipped(plan: Plan, package: str, version: str) -> str:
    module = plan.module.replace(".", "_")
    blocks = [
        f"# Items of {package} {version} ({plan.module}) that the type table refused: "
        f"{len(plan.skipped)}"
    ]
    for skip in plan.skipped:
        blocks.append(
            f"item: {skip.item}\nreason: {skip.token}\ndetail: {skip.detail}\n"
            f"override: {skip.hint.replace('NAME', module)}"
        )
    return "\n\n".join(blocks) + "\n"


# -- C wrapper --------------------------------------------------------------------------------

C_RUNTIME = r"""
static PyObject *Mismatch = NULL;
static PyObject *Externs = NULL;

static int check(PyObject *v, const char **d, char *why, size_t n);

/* Advance *d past one descriptor. */
static void skip(const char **d) {
    char c = *(*d)++;
    if (c == 'L' || c == 'S' || c == 'M' || c == 'T' || c == 'O' || c == 'R' || c == 'H') {
        int depth = 0;
        do {
            if (**d == '<') depth++;
            else if (**d == '>') depth--;
            (*d)++;
        } while (depth > 0 && **d);
    }
}

static void type_name(PyObject *v, char *buf, size_t n) {
    PyObject *name = PyType_GetName(Py_TYPE(v));
    const char *text = name ? PyUnicode_AsUTF8AndSize(name, NULL) : NULL;
    snprintf(buf, n, "%s", text ? text : "?");
    Py_XDECREF(name);
    PyErr_Clear();
}

static int fail(PyObject *v, const char *where, char *why, size_t n) {
    char got[96];
    type_name(v, got, sizeof got);
    snprintf(why, n, "%s%s", where, got);
    return 0;
}

/* 1: v matches; 0: mismatch (why says where); -1: a Python error is set. */
static int check_items(PyObject *iterable, const char *d, char *why, size_t n, const char *kind) {
    PyObject *it = PyObject_GetIter(iterable), *item;
    long index = 0;
    if (!it) return -1;
    while ((item = PyIter_Next(it))) {
        const char *p = d;
        int ok = check(item, &p, why, n);
        Py_DECREF(item);
        if (ok != 1) {
            if (ok == 0) {
                char inner[160];
                snprintf(inner, sizeof inner, "%s", why);
                snprintf(why, n, "%s item %ld: %s", kind, index, inner);
            }
            Py_DECREF(it);
            return ok;
        }
        index++;
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 1;
}

static int check(PyObject *v, const char **d, char *why, size_t n) {
    const char *start = *d;
    char c = *(*d)++;
    switch (c) {
    case 'a': return 1;
    case 'i': {
        int overflow = 0;
        if (!PyLong_Check(v) || PyBool_Check(v)) return fail(v, "", why, n);
        PyLong_AsLongLongAndOverflow(v, &overflow);
        if (PyErr_Occurred()) return -1;
        if (overflow) { snprintf(why, n, "int out of the 64-bit range"); return 0; }
        return 1;
    }
    case 'I': return (PyLong_Check(v) && !PyBool_Check(v)) ? 1 : fail(v, "", why, n);
    case 'f': return ((PyFloat_Check(v) || PyLong_Check(v)) && !PyBool_Check(v)) ? 1 : fail(v, "", why, n);
    case 'b': return PyBool_Check(v) ? 1 : fail(v, "", why, n);
    case 's': return PyUnicode_Check(v) ? 1 : fail(v, "", why, n);
    case 'y': return PyBytes_Check(v) ? 1 : fail(v, "", why, n);
    case 'F': return PyCallable_Check(v) ? 1 : fail(v, "", why, n);
    case 'O': {
        (*d)++; /* < */
        if (v == Py_None) { *d = start; skip(d); return 1; }
        int ok = check(v, d, why, n);
        *d = start; skip(d);
        return ok;
    }
    case 'L': case 'S': {
        const char *inner = *d + 1;
        int ok;
        *d = start; skip(d);
        if (c == 'L' && !PyList_Check(v) && !PyTuple_Check(v)) return fail(v, "", why, n);
        if (c == 'S' && !PyObject_IsInstance(v, (PyObject *)&PySet_Type)
                     && !PyObject_IsInstance(v, (PyObject *)&PyFrozenSet_Type)) return fail(v, "", why, n);
        ok = check_items(v, inner, why, n, c == 'L' ? "list" : "set");
        return ok;
    }
    case 'M': {
        const char *key_d = *d + 1, *value_d = key_d;
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        skip(&value_d); value_d++; /* , */
        *d = start; skip(d);
        if (!PyDict_Check(v)) return fail(v, "", why, n);
        while (PyDict_Next(v, &pos, &key, &value)) {
            const char *p = key_d, *q = value_d;
            int ok = check(key, &p, why, n);
            if (ok == 1) ok = check(value, &q, why, n);
            if (ok != 1) {
                if (ok == 0) { char inner[160]; snprintf(inner, sizeof inner, "%s", why);
                               snprintf(why, n, "map entry: %s", inner); }
                return ok;
            }
        }
        return 1;
    }
    case 'T': {
        const char *p = *d + 1;
        Py_ssize_t i = 0, size;
        *d = start; skip(d);
        if (!PyTuple_Check(v)) return fail(v, "", why, n);
        size = PyTuple_Size(v);
        while (*p && *p != '>') {
            if (i >= size) { snprintf(why, n, "tuple of %ld items, too short", (long)size); return 0; }
            int ok = check(PyTuple_GetItem(v, i), &p, why, n);
            if (ok != 1) return ok;
            if (*p == ',') p++;
            i++;
        }
        if (i != size) { snprintf(why, n, "tuple of %ld items, expected %ld", (long)size, (long)i); return 0; }
        return 1;
    }
    case 'R': {
        const char *p = *d + 1;
        *d = start; skip(d);
        if (!PyDict_Check(v)) return fail(v, "", why, n);
        while (*p && *p != ';' && *p != '>') p++; /* record name */
        while (*p == ';') {
            char field[128];
            size_t len = 0;
            p++;
            while (*p != ':' && len + 1 < sizeof field) field[len++] = *p++;
            field[len] = 0;
            p++; /* : */
            PyObject *item = PyDict_GetItemString(v, field);
            if (!item) {
                if (*p == 'O') { skip(&p); continue; }
                snprintf(why, n, "record without field %s", field);
                return 0;
            }
            int ok = check(item, &p, why, n);
            if (ok != 1) return ok;
        }
        return 1;
    }
    case 'H': {
        char name[128];
        size_t len = 0;
        const char *p = *d + 1;
        *d = start; skip(d);
        while (*p != '>' && len + 1 < sizeof name) name[len++] = *p++;
        name[len] = 0;
        PyObject *cls = PyObject_GetAttrString(Externs, name);
        if (!cls) return -1;
        int ok = PyObject_IsInstance(v, cls);
        Py_DECREF(cls);
        if (ok < 0) return -1;
        return ok ? 1 : fail(v, "", why, n);
    }
    }
    PyErr_Format(PyExc_SystemError, "bad type descriptor %s", start);
    return -1;
}

typedef struct {
    const char *name;    /* Mochi name, also the sidecar's attribute */
    const char *mochi;   /* the declared Mochi signature, for messages */
    int nargs;
    const char *const *args;  /* one descriptor per parameter */
    const char *const *arg_types;  /* their Mochi spelling */
    const char *ret;     /* "" when the function returns nothing */
    const char *ret_type;
} Entry;

static PyObject *call_entry(const Entry *e, PyObject *callable, PyObject *args) {
    char why[256];
    Py_ssize_t given = PyTuple_Size(args);
    if (given != e->nargs) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d arguments (%zd given)", e->name, e->nargs, given);
        return NULL;
    }
    for (int i = 0; i < e->nargs; i++) {
        const char *d = e->args[i];
        int ok = check(PyTuple_GetItem(args, i), &d, why, sizeof why);
        if (ok < 0) return NULL;
        if (!ok) {
            PyErr_Format(Mismatch, "%s: argument %d declared %s, got %s", e->name, i + 1, e->arg_types[i], why);
            return NULL;
        }
    }
    PyObject *result = PyObject_Call(callable, args, NULL);
    if (!result || !e->ret[0]) return result;
    const char *d = e->ret;
    int ok = check(result, &d, why, sizeof why);
    if (ok < 0) { Py_DECREF(result); return NULL; }
    if (!ok) {
        if (STRICT_RETURNS) {
            PyErr_Format(Mismatch, "%s: declared to return %s, got %s", e->name, e->ret_type, why);
            Py_DECREF(result);
            return NULL;
        }
        if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "%s: declared to return %s, got %s",
                             e->name, e->ret_type, why) < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}
"""


def render_c(plan: Plan, package: str, version: str, *, strict_returns: bool) -> str:
    name = plan.module.replace(".", "_")
    functions = _unique(plan.functions)
    out = [
        f"/* Wrapper module _mochi_{name} for {package} {version}. Generated by mochi-pybridge:",
        " * do not edit. Limited API: one build serves CPython 3.11 and every later minor. */",
        f"#define Py_LIMITED_API {LIMITED_API}",
        "#define PY_SSIZE_T_CLEAN",
        "#include <Python.h>",
        "#include <stdio.h>",
        f"#define STRICT_RETURNS {1 if strict_returns else 0}",
        C_RUNTIME,
    ]
    for i, func in enumerate(functions):
        args = ", ".join(_c_string(p.type.descriptor()) for p in func.params) or "NULL"
        types = ", ".join(_c_string(p.type.mochi()) for p in func.params) or "NULL"
        out.append(f"static const char *const args_{i}[] = {{{args}}};")
        out.append(f"static const char *const types_{i}[] = {{{types}}};")
    out.append("static const Entry entries[] = {")
    for i, func in enumerate(functions):
        ret = func.result.descriptor() if func.result is not None else ""
        ret_type = func.result.mochi() if func.result is not None else ""
        signature = f"{func.mochi_name}(" + ", ".join(p.type.mochi() for p in func.params) + ")"
        out.append(
            f"    {{{_c_string(func.mochi_name)}, {_c_string(signature)}, {len(func.params)}, "
            f"args_{i}, types_{i}, {_c_string(ret)}, {_c_string(ret_type)}}},"
        )
    out.append("    {NULL, NULL, 0, NULL, NULL, NULL, NULL}")
    out.append("};")
    out.append(f"static PyObject *callables[{max(1, len(functions))}];")
    for i in range(len(functions)):
        out.append(
            f"static PyObject *w_{i}(PyObject *self, PyObject *args) "
            f"{{ (void)self; return call_entry(&entries[{i}], callables[{i}], args); }}"
        )
    out.append("static PyMethodDef methods[] = {")
    for i, func in enumerate(functions):
        out.append(
            f"    {{{_c_string(func.mochi_name)}, w_{i}, METH_VARARGS, {_c_string(func.source)}}},"
        )
    out.append("    {NULL, NULL, 0, NULL}")
    out.append("};")
    out.append(f"""static struct PyModuleDef module_def = {{
    PyModuleDef_HEAD_INIT, "_mochi_{name}", "Typed Mochi entry points for {package} {version}.",
    -1, methods, NULL, NULL, NULL, NULL
}};

PyMODINIT_FUNC PyInit__mochi_{name}(void) {{
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    Mismatch = PyErr_NewException("_mochi_{name}.PythonTypeMismatch", PyExc_TypeError, NULL);
    if (!Mismatch || PyModule_AddObjectRef(m, "PythonTypeMismatch", Mismatch) < 0) goto error;
    Externs = PyImport_ImportModule("{name}_externs");
    if (!Externs) goto error;
    for (int i = 0; entries[i].name; i++) {{
        callables[i] = PyObject_GetAttrString(Externs, entries[i].name);
        if (!callables[i]) goto error;
    }}
    return m;
error:
    Py_DECREF(m);
    return NULL;
}}
""")
    return "\n".join(out)


def render_all(
    plan: Plan,
    package: str,
    version: str,
    *,
    strict_returns: bool = True,
    async_mode: str = "per-call",
) -> Outputs:
    return Outputs(
        shim=render_shim(plan, package, version),
        sidecar=render_sidecar(plan, package, version, async_mode=async_mode),
        sidecar_stub=render_sidecar_stub(plan),
        c_source=render_c(plan, package, version, strict_returns=strict_returns),
        skipped=render_skipped(plan, package, version),
    )
