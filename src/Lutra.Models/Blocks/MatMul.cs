using Lutra.Core.Quants;

namespace Lutra.Models.Blocks;

/// <summary>
/// y = W·x for every bound input row, through the quant table: each input row is converted once to the weight's
/// activation format, then one reference dot product per output. This is the seam where a fast GEMM goes.
/// </summary>
public static class MatMul
{
    /// <summary>
    /// <paramref name="y"/> receives input.Rows rows of w.Rows values (row-major). In reference mode the weights are
    /// dequantized row by row and multiplied with the unrounded f32 input, accumulating in double.
    /// </summary>
    /// <param name="rowScratch">At least w.Columns floats (reference mode only).</param>
    /// <param name="parallel">Splits the output rows over a worker team (quantized path only); null runs on this thread.</param>
    public static unsafe void Multiply(WeightMatrix w, QuantizedInput input, Span<float> y, bool reference, Span<float> rowScratch,
        ParallelMatMul? parallel = null)
    {
        if (input.Columns != w.Columns)
            throw new InvalidOperationException($"{w.Name}: input has {input.Columns} columns, weight expects {w.Columns}");
        var tokens = input.Rows;
        var outputs = w.Rows;
        if (reference)
        {
            var x = input.Source;
            var row = rowScratch[..w.Columns];
            for (var r = 0; r < outputs; r++)
            {
                w.DequantizeRow(r, row);
                for (var t = 0; t < tokens; t++)
                {
                    var xt = x.Slice(t * w.Columns, w.Columns);
                    var sum = 0.0;
                    for (var i = 0; i < row.Length; i++)
                        sum += (double)row[i] * xt[i];
                    y[t * outputs + r] = (float)sum;
                }
            }
            return;
        }

        var activationType = QuantReference.ActivationType(w.Type);
        var rowBytes = QuantizedInput.ActivationRowBytes(activationType, w.Columns);
        var activations = input.Get(activationType);
        if (parallel is not null && parallel.Team.Size > 1)
        {
            fixed (byte* a = activations)
            fixed (float* yp = y)
                parallel.Run(w, a, rowBytes, tokens, yp);
            return;
        }
        for (var r = 0; r < outputs; r++)
        {
            var weights = w.Row(r);
            for (var t = 0; t < tokens; t++)
                y[t * outputs + r] = QuantReference.Dot(w.Type, weights, activations.Slice(t * rowBytes, rowBytes), w.Columns);
        }
    }

    /// <summary>
    /// The row-split form of the quantized path: each worker runs the same per-row dot products over its own range
    /// of output rows, reading activations and writing outputs through pointers pinned by the caller.
    /// </summary>
    public sealed unsafe class ParallelMatMul(WorkerTeam team) : IRowWork
    {
        private WeightMatrix? _w;
        private byte* _activations;
        private int _rowBytes;
        private int _tokens;
        private float* _y;

        public WorkerTeam Team { get; } = team;

        internal void Run(WeightMatrix w, byte* activations, int rowBytes, int tokens, float* y)
        {
            _w = w;
            _activations = activations;
            _rowBytes = rowBytes;
            _tokens = tokens;
            _y = y;
            try
            {
                Team.Run(this, w.Rows);
            }
            finally
            {
                _w = null;
                _activations = null;
                _y = null;
            }
        }

        public void Execute(int begin, int end)
        {
            var w = _w!;
            var outputs = w.Rows;
            for (var r = begin; r < end; r++)
            {
                var weights = w.Row(r);
                for (var t = 0; t < _tokens; t++)
                    _y[t * outputs + r] = QuantReference.Dot(w.Type, weights, new ReadOnlySpan<byte>(_activations + (long)t * _rowBytes, _rowBytes), w.Columns);
            }
        }
    }

    /// <summary>Adds a bias vector to every row of <paramref name="y"/>.</summary>
    public static void AddBias(Span<float> y, ReadOnlySpan<float> bias)
    {
        for (var t = 0; t + bias.Length <= y.Length; t += bias.Length)
        {
            var row = y.Slice(t, bias.Length);
            for (var i = 0; i < bias.Length; i++)
                row[i] += bias[i];
        }
    }
}
