"""Recurrent cells written out by hand, and a multi-layer runner, next to torch's fused ones.

Elman RNN (Elman 1990), with tanh or ReLU:

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

GRU (Cho et al. 2014), torch's variant (the reset gate scales W_hn h, bias included):

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate state
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)          input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)          forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)             cell candidate
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)          output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

The gate matrices are stacked as torch stacks them (LSTM: i, f, g, o; GRU: r, z, n), and
`Recurrent` names them as nn.RNN / nn.GRU / nn.LSTM do (weight_ih_l{k}, weight_hh_l{k},
bias_ih_l{k}, bias_hh_l{k}), so a state dict moves between the two implementations as is.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import require_positive, require_probability

Cell = Literal["rnn_tanh", "rnn_relu", "gru", "lstm"]
Impl = Literal["torch", "scratch"]
CELLS: tuple[str, ...] = get_args(Cell)
IMPLS: tuple[str, ...] = get_args(Impl)
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}

# The state of a stack: h [layers, B, H], or (h, c) for the LSTM, as torch's modules take it.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


# --- cells: one time step ------------------------------------------------------------------
# `xw` is the input half of every gate, W_i* x_t + b_i*. It does not depend on the state, so
# the runner computes it for all time steps in one matrix product; the cells add the rest.


def rnn_tanh_cell(xw: torch.Tensor, h: torch.Tensor, w_hh, b_hh) -> torch.Tensor:
    return torch.tanh(xw + F.linear(h, w_hh, b_hh))


def rnn_relu_cell(xw: torch.Tensor, h: torch.Tensor, w_hh, b_hh) -> torch.Tensor:
    return torch.relu(xw + F.linear(h, w_hh, b_hh))


def gru_cell(xw: torch.Tensor, h: torch.Tensor, w_hh, b_hh) -> torch.Tensor:
    x_r, x_z, x_n = xw.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # reset gate
    z = torch.sigmoid(x_z + h_z)  # update gate
    n = torch.tanh(x_n + r * h_n)  # candidate state
    return (1 - z) * n + z * h


def lstm_cell(
    xw: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_hh, b_hh
) -> tuple[torch.Tensor, torch.Tensor]:
    h, c = state
    x_i, x_f, x_g, x_o = xw.chunk(4, dim=-1)
    h_i, h_f, h_g, h_o = F.linear(h, w_hh, b_hh).chunk(4, dim=-1)
    i = torch.sigmoid(x_i + h_i)  # input gate
    f = torch.sigmoid(x_f + h_f)  # forget gate
    g = torch.tanh(x_g + h_g)  # cell candidate
    o = torch.sigmoid(x_o + h_o)  # output gate
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


CELL_STEPS = {
    "rnn_tanh": rnn_tanh_cell,
    "rnn_relu": rnn_relu_cell,
    "gru": gru_cell,
    "lstm": lstm_cell,
}


# --- the stack: layers over a sequence -----------------------------------------------------


class Recurrent(nn.Module):
    """`n_layer` layers of `cell` over a sequence, the hand-written twin of nn.RNN / nn.GRU /
    nn.LSTM: the same arguments in the same order (torch's hidden_size and num_layers are
    n_hidden and n_layer here), the same parameter names and shapes, inputs and outputs.

    Layer k reads the outputs of layer k - 1 (dropout between layers, not after the last, only
    in training) and starts from its slice of `state` (zeros when None).
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        n_hidden: int,
        n_layer: int = 1,
        dropout: float = 0.0,
        batch_first: bool = False,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        check_recurrent_sizes(input_size, n_hidden, n_layer, dropout)
        self.cell, self.step = cell, CELL_STEPS[cell]
        self.input_size, self.n_hidden, self.n_layer = input_size, n_hidden, n_layer
        self.dropout, self.batch_first = dropout, batch_first
        rows = GATES[cell] * n_hidden
        for k in range(n_layer):
            inputs = input_size if k == 0 else n_hidden
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, inputs)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(rows, n_hidden)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(rows)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias uniform in +-1/sqrt(n_hidden)."""
        bound = 1.0 / math.sqrt(self.n_hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int) -> tuple[torch.Tensor, ...]:
        return tuple(
            getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x [T, B, I] ([B, T, I] with batch_first) -> (outputs of the last layer [T, B, H]
        (or [B, T, H]), final state of every layer [L, B, H] (h, or (h, c) for the LSTM))."""
        if self.batch_first:
            x = x.transpose(0, 1)
        if state is None:
            zeros = x.new_zeros(self.n_layer, x.size(1), self.n_hidden)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        finals = []
        for k in range(self.n_layer):
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            layer_state = (state[0][k], state[1][k]) if self.cell == "lstm" else state[k]
            x, layer_state = self._run_layer(k, x, layer_state)
            finals.append(layer_state)
        if self.cell == "lstm":
            final = (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        else:
            final = torch.stack(finals)
        return (x.transpose(0, 1) if self.batch_first else x), final

    def _run_layer(self, k: int, x: torch.Tensor, state):
        """One layer over the whole sequence x [T, B, I]: outputs [T, B, H], final state."""
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
        xw = F.linear(x, w_ih, b_ih)  # the input half of every gate, all time steps at once
        outputs = []
        for t in range(x.size(0)):
            state = self.step(xw[t], state, w_hh, b_hh)
            outputs.append(state[0] if self.cell == "lstm" else state)
        return torch.stack(outputs), state

    def extra_repr(self) -> str:
        return (
            f"{self.cell}, {self.input_size}, {self.n_hidden}, n_layer={self.n_layer}, "
            f"dropout={self.dropout}, batch_first={self.batch_first}"
        )


def check_recurrent_sizes(input_size: int, n_hidden: int, n_layer: int, dropout: float) -> None:
    require_positive("Recurrent", input_size=input_size, n_hidden=n_hidden, n_layer=n_layer)
    require_probability("Recurrent", dropout=dropout)


def make_recurrent(
    cell: Cell,
    impl: Impl,
    input_size: int,
    n_hidden: int,
    n_layer: int = 1,
    dropout: float = 0.0,
    batch_first: bool = False,
) -> nn.Module:
    """A stack of `cell` layers: torch's fused module (`impl="torch"`) or `Recurrent`
    (`"scratch"`). Both take and return the same tensors and share parameter names.

    The choices are checked here too: a model built in Python is not validated by the CLI's
    parser, and an unknown `impl` would otherwise quietly get torch's module."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    check_recurrent_sizes(input_size, n_hidden, n_layer, dropout)
    if impl == "scratch":
        return Recurrent(cell, input_size, n_hidden, n_layer, dropout, batch_first)
    # torch warns about dropout with a single layer (there is nothing between layers to drop).
    args = dict(
        num_layers=n_layer, dropout=dropout if n_layer > 1 else 0.0, batch_first=batch_first
    )
    if cell == "lstm":
        return nn.LSTM(input_size, n_hidden, **args)
    if cell == "gru":
        return nn.GRU(input_size, n_hidden, **args)
    return nn.RNN(input_size, n_hidden, nonlinearity=cell.removeprefix("rnn_"), **args)


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph that made it (truncated backprop through time)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def select_rows(state: State, rows: torch.Tensor) -> State:
    """Keep (and repeat) the batch rows `rows` of a state [L, B, H] (or its (h, c))."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows) for s in state)
    return state.index_select(1, rows)


def concat_rows(states: list[State]) -> State:
    """States of several batches as one batch, in order."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
    return torch.cat(states, dim=1)
