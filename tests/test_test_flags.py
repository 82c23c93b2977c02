"""The Theano flags the tests add keep the caller's (the GPU machine's include paths)."""

from conftest import cxxflags_with_march_native


def test_march_native_is_appended_to_the_callers_cxxflags():
    device = "device=cuda0,gcc.cxxflags=-I/opt/gpua/include -L/opt/gpua/lib,floatX=float32"
    assert cxxflags_with_march_native(device) == "-I/opt/gpua/include -L/opt/gpua/lib -march=native"
    # the last value of a flag is the one Theano uses
    assert cxxflags_with_march_native("gcc.cxxflags=-O1,gcc.cxxflags=-O2") == "-O2 -march=native"


def test_without_cxxflags_it_is_march_native_alone():
    assert cxxflags_with_march_native("") == "-march=native"
    assert cxxflags_with_march_native("device=cpu,floatX=float64") == "-march=native"
