"""Compiles a clean function, then a graph holding GpuAdvancedIncSubtensor1_dev20 (a real
non-deterministic op of Theano's catalogue), then another clean one.

On a machine without a GPU the dev20 graph cannot be linked; that failure is caught,
so that the audit's report (made before linking) is what the test looks at. The
audit's NondeterministicOpError (--strict) is not caught.
"""

import theano
import theano.tensor as T
from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1_dev20

x, y, indices = T.matrix("x"), T.matrix("y"), T.lvector("indices")
print(theano.function([x], (x * 2).sum())([[1.0, 2.0]]))
node = theano.gof.Apply(GpuAdvancedIncSubtensor1_dev20(), [x, y, indices], [x.type()])  # DEV20-LINE
try:
    theano.function([x, y, indices], node.outputs[0], mode=theano.compile.mode.Mode(optimizer=None))
except Exception as error:
    if type(error).__name__ == "NondeterministicOpError":
        raise
    print("not linked on this machine")
print(theano.function([x], (x * 3).sum())([[1.0, 2.0]]))
