"""The DSO node's own name, where a record or a view names who acted and the node did.

Promises: `NODE_NAME` is the one spelling of that name. The node signs its own `operator_action` records on the
DSO chain with it (the relay watch's read-back records, `services.switching_watch`; the chain adapter's nonce
fillers, `node_chains`), and the console's Operations audit trail shows those lines under it
(`console.node_records`). No console user may hold it (`auth.users`: refused at add and never acting from a
file that holds it), so a line under it is always the node's.
Why one module of its own: the console's user store must not import the node's chain code to learn a name.
"""

NODE_NAME = "dso-node"
