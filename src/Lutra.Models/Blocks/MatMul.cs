using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Threading;

namespace Lutra.Models.Blocks;

/// <summary>
/// y = W·x for every bound input row. The fast path runs the weight's <see cref="MatVecKernel"/> on activations
/// prepared once per input, with the output rows split over the compute pool. Reference mode dequantizes every
/// weight row and multiplies it with the unrounded f32 input, accumulating in double.
/// </summary>
public static class MatMul
{
    /// <summary><paramref name="y"/> receives input.Rows rows of w.Rows values (row-major).</summary>
    /// <param name="rowScratch">At least w.Columns floats (reference mode only).</param>
    public static unsafe void Multiply(WeightMatrix w, QuantizedInput input, Span<float> y, bool reference, Span<float> rowScratch,
        MatMulWork work)
    {
        Check(w, input, y);
        if (reference)
        {
            MultiplyReference(w, input, y, rowScratch);
            return;
        }
        var group = input.RowsAtOnce(w.Kernel);
        fixed (float* yp = y)
        {
            if (work.SplitsByTokenGroups(input.Rows, group))
            {
                work.Set(0, w, null, 0, false, yp);
                work.RunTokenGroups(1, input, group);
                return;
            }
            // Lookup-table inputs are prepared and multiplied a token group at a time (see QuantizedInput).
            for (var first = 0; first < input.Rows; first += group)
            {
                var count = Math.Min(group, input.Rows - first);
                var states = input.Get(w.Kernel, first, count, out var stride, work.Pool, out var perThread);
                work.Set(0, w, states, stride, perThread, yp + (long)first * w.Rows);
                work.RunSegments(1, count);
            }
        }
    }

    /// <summary>
    /// Several matrices over the same input (Q/K/V, gate/up) in one pass of the pool: their rows are split over the
    /// threads as one range, so a matrix smaller than a thread's share (K and V of a GQA model) does not leave
    /// threads idle, and the threads meet once instead of once per matrix. Each output equals
    /// <see cref="Multiply(WeightMatrix, QuantizedInput, Span{float}, bool, Span{float}, MatMulWork)"/>'s.
    /// </summary>
    public static unsafe void Multiply(QuantizedInput input, bool reference, Span<float> rowScratch, MatMulWork work,
        WeightMatrix w0, Span<float> y0, WeightMatrix w1, Span<float> y1, WeightMatrix? w2 = null, Span<float> y2 = default)
    {
        if (reference)
        {
            Multiply(w0, input, y0, reference, rowScratch, work);
            Multiply(w1, input, y1, reference, rowScratch, work);
            if (w2 is not null)
                Multiply(w2, input, y2, reference, rowScratch, work);
            return;
        }
        Check(w0, input, y0);
        Check(w1, input, y1);
        if (w2 is not null)
            Check(w2, input, y2);
        var group = input.RowsAtOnce(w0.Kernel);
        if (input.RowsAtOnce(w1.Kernel) != group || (w2 is not null && input.RowsAtOnce(w2.Kernel) != group))
        {
            // A prompt through lookup tables on some matrices and not on others: each in its own token groups, so the
            // others still read their weights once for the whole batch.
            Multiply(w0, input, y0, reference, rowScratch, work);
            Multiply(w1, input, y1, reference, rowScratch, work);
            if (w2 is not null)
                Multiply(w2, input, y2, reference, rowScratch, work);
            return;
        }
        fixed (float* p0 = y0)
        fixed (float* p1 = y1)
        fixed (float* p2 = y2)
        {
            if (work.SplitsByTokenGroups(input.Rows, group))
            {
                work.Set(0, w0, null, 0, false, p0);
                work.Set(1, w1, null, 0, false, p1);
                if (w2 is not null)
                    work.Set(2, w2, null, 0, false, p2);
                work.RunTokenGroups(w2 is null ? 2 : 3, input, group);
                return;
            }
            // Lookup-table inputs are prepared and multiplied a token group at a time (see QuantizedInput).
            for (var first = 0; first < input.Rows; first += group)
            {
                var count = Math.Min(group, input.Rows - first);
                var s0 = input.Get(w0.Kernel, first, count, out var stride0, work.Pool, out var own0);
                var s1 = input.Get(w1.Kernel, first, count, out var stride1, work.Pool, out var own1);
                work.Set(0, w0, s0, stride0, own0, p0 + (long)first * w0.Rows);
                work.Set(1, w1, s1, stride1, own1, p1 + (long)first * w1.Rows);
                if (w2 is not null)
                {
                    var s2 = input.Get(w2.Kernel, first, count, out var stride2, work.Pool, out var own2);
                    work.Set(2, w2, s2, stride2, own2, p2 + (long)first * w2.Rows);
                }
                work.RunSegments(w2 is null ? 2 : 3, count);
            }
        }
    }

    private static void Check(WeightMatrix w, QuantizedInput input, Span<float> y)
    {
        if (input.Columns != w.Columns)
            throw new InvalidOperationException($"{w.Name}: input has {input.Columns} columns, weight expects {w.Columns}");
        if (y.Length < input.Rows * w.Rows)
            throw new ArgumentException($"{w.Name}: output holds {y.Length} floats, {input.Rows}×{w.Rows} needed", nameof(y));
    }

    private static void MultiplyReference(WeightMatrix w, QuantizedInput input, Span<float> y, Span<float> rowScratch)
    {
        var x = input.Source;
        var tokens = input.Rows;
        var outputs = w.Rows;
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

/// <summary>
/// One matmul, or a few over the same input (<see cref="MatMul.Multiply(QuantizedInput, bool, Span{float}, MatMulWork, WeightMatrix, Span{float}, WeightMatrix, Span{float}, WeightMatrix?, Span{float})"/>),
/// split over the pool's threads by output rows (a reused object, so dispatch allocates nothing). With several
/// input rows (prefill), each thread walks its rows in tiles small enough to stay in cache while every token of
/// the batch passes over them, so weights are read from memory once per batch, not per token.
/// </summary>
public sealed unsafe class MatMulWork(ComputePool pool) : IComputeWork
{
    // Rows per tile: 16 rows of the widest common matrices (16 K columns of Q8_0) stay within L2.
    private const int RowTile = 16;
    private const int MaxSegments = 3;

    /// <summary>One matrix of the job with its prepared input and output.</summary>
    private struct Segment
    {
        public MatVecKernel? Kernel;
        public byte* Weights;
        public long RowBytes;
        public int Rows;
        public int Columns;
        public byte* States;
        public int StateStride;
        /// <summary>One prepared copy of the single input row per thread, thread i's at i·StateStride.</summary>
        public bool PerThreadStates;
        public float* Y;
        /// <summary>First row of this matrix in the job's combined row range (aligned to the job's tile).</summary>
        public int Offset;
    }

    // Enough chunks that the last one to finish costs a few percent of the job; few enough that each is a long
    // sequential read: at most 16 per thread, and none under 256 KB of weights (times the tokens), so a small
    // low-bit matrix is split as before, one run per thread. 16 chunks per thread of every matrix cost ternary
    // decode at two threads a fifth of its speed (TQ1_0 in TQ2_0 tiles: Q/K/V in 51 KB chunks; 216 → 170 t/s),
    // whose streams broke every few KB.
    private const int MaxChunksPerThread = 16;
    // The last chunk of each share is dealt in up to four tile-aligned pieces, so the thread that runs out of work
    // first waits at most a quarter chunk for the other, not a whole one (two-thread decode, llama-1b, the calling
    // thread's wait at the end of jobs, medians of six tokens-per-run samples: TQ1_0 0.65 → 0.44 ms per token,
    // Q2_K 0.82 → 0.55).
    private const int TailPieces = 4;
    private const long MinChunkBytes = 256 * 1024;

    // Half of a Zen 4 core's 1 MB L2: the rest holds the row tile and the outputs.
    internal const int TokenGroupBytes = 512 * 1024;

    private readonly Segment[] _segments = new Segment[MaxSegments];
    // Per thread: the next of its own chunks anyone takes.
    private readonly PaddedCounter[] _nextChunk = [.. Enumerable.Range(0, pool.ThreadCount).Select(_ => new PaddedCounter())];
    private int _chunkRows;
    private int _chunksPerThread;
    // Pieces the last chunk of each share is dealt in, and their rows (a whole number of tiles).
    private int _tailPieces;
    private int _tailRows;
    private int _segmentCount;
    private int _tokens;
    // Set while a prompt is split by token groups (RunTokenGroups).
    private QuantizedInput? _byGroups;
    private int _groupTokens;
    private int _tile;
    private int _totalRows;

    public ComputePool Pool { get; } = pool;

    /// <summary>
    /// <paramref name="kernel"/> over <paramref name="rows"/> rows at <paramref name="weights"/> (in the kernel's
    /// layout), split over the pool exactly as a forward pass splits it: the kernel tuner times candidates here.
    /// </summary>
    internal void Run(MatVecKernel kernel, byte* weights, long rowBytes, int rows, int columns, byte* states, int stateStride,
        bool perThreadStates, int tokens, float* y)
    {
        Set(0, kernel, weights, rowBytes, rows, columns, states, stateStride, perThreadStates, y);
        RunSegments(1, tokens);
    }

    internal void Set(int index, WeightMatrix w, byte* states, int stateStride, bool perThreadStates, float* y) =>
        Set(index, w.Kernel, w.KernelData, w.KernelRowBytes, w.Rows, w.Columns, states, stateStride, perThreadStates, y);

    private void Set(int index, MatVecKernel kernel, byte* weights, long rowBytes, int rows, int columns, byte* states, int stateStride,
        bool perThreadStates, float* y) =>
        _segments[index] = new Segment
        {
            Kernel = kernel, Weights = weights, RowBytes = rowBytes, Rows = rows, Columns = columns, States = states,
            StateStride = stateStride, PerThreadStates = perThreadStates, Y = y,
        };

    /// <summary>Runs the first <paramref name="count"/> segments set with <see cref="Set(int, WeightMatrix, byte*, int, bool, float*)"/>.</summary>
    internal void RunSegments(int count, int tokens)
    {
        _segmentCount = count;
        _tokens = tokens;
        // Repacking kernels read whole tiles of rows: split (and step) at the largest tile of the job.
        _tile = RowTile;
        for (var i = 0; i < count; i++)
            _tile = Math.Max(_tile, _segments[i].Kernel!.RowTile);
        long work = 0;
        long bytes = 0;
        var offset = 0;
        for (var i = 0; i < count; i++)
        {
            _segments[i].Offset = offset;
            offset += (_segments[i].Rows + _tile - 1) / _tile * _tile;
            work += (long)_segments[i].Rows * _segments[i].Columns * tokens;
            bytes += _segments[i].Rows * _segments[i].RowBytes * tokens;
        }
        _totalRows = offset;
        try
        {
            // Small jobs are not worth waking the other threads for.
            if (Pool.ThreadCount == 1 || work < 64 * 1024)
            {
                Execute(0, 1);
            }
            else
            {
                _chunksPerThread = (int)Math.Clamp(bytes / (Pool.ThreadCount * MinChunkBytes), 1, MaxChunksPerThread);
                var chunks = Pool.ThreadCount * _chunksPerThread;
                _chunkRows = Math.Max(1, (_totalRows + chunks * _tile - 1) / (chunks * _tile)) * _tile;
                _tailPieces = Math.Min(TailPieces, _chunkRows / _tile);
                _tailRows = (_chunkRows / _tile + _tailPieces - 1) / _tailPieces * _tile;
                foreach (var next in _nextChunk)
                    next.Value = 0;
                Pool.Run(this);
            }
        }
        finally
        {
            for (var i = 0; i < count; i++)
                _segments[i] = default;
        }
    }

    /// <summary>
    /// Whether a prompt of <paramref name="rows"/> tokens, whose prepared inputs hold <paramref name="group"/> tokens at
    /// a time (lookup tables), is split over the threads by token groups instead of by output rows: with several
    /// threads and groups that share out evenly (a whole number per thread, or at least four each): otherwise a thread
    /// sits out a whole group. Measured while the bit-serial tables were grouped too: their 28-token groups make five
    /// of a 128-token prompt, and three against two took 10-15 % longer than splitting rows (Q4_0, Q2_K, pp128).
    /// </summary>
    internal bool SplitsByTokenGroups(int rows, int group)
    {
        var groups = (rows + group - 1) / group;
        var threads = Pool.ThreadCount;
        return group < rows && threads > 1 && groups >= threads && (groups % threads == 0 || groups >= 4 * threads);
    }

    /// <summary>
    /// The first <paramref name="count"/> segments (set without states) over every bound row of <paramref name="input"/>,
    /// split over the threads by token groups of <paramref name="group"/>: each thread prepares its own groups'
    /// lookup tables into its own buffer (<see cref="QuantizedInput.PrepareForThread"/>) and multiplies every row of the
    /// matrices with them. Split by rows instead, every thread read every group's tables, half of them written by the
    /// other core, and the pool met twice per group (llama-1b TQ1_0 tables, two threads, pp128: 218 t/s against 477
    /// for the interleaved tiles). Each thread reads the whole matrix per group, from L3 after the first.
    /// </summary>
    internal void RunTokenGroups(int count, QuantizedInput input, int group)
    {
        _segmentCount = count;
        _tokens = input.Rows;
        _byGroups = input;
        _groupTokens = group;
        try
        {
            Pool.Run(this);
        }
        finally
        {
            _byGroups = null;
            for (var i = 0; i < count; i++)
                _segments[i] = default;
        }
    }

    private void ExecuteTokenGroups(int threadIndex, int threadCount)
    {
        var input = _byGroups!;
        var groups = (input.Rows + _groupTokens - 1) / _groupTokens;
        // This thread's prepared group per segment (the segments themselves are shared by all threads).
        var states = stackalloc nint[MaxSegments];
        var strides = stackalloc int[MaxSegments];
        for (var g = threadIndex; g < groups; g += threadCount)
        {
            var first = g * _groupTokens;
            var tokens = Math.Min(_groupTokens, input.Rows - first);
            for (var i = 0; i < _segmentCount; i++)
            {
                ref var s = ref _segments[i];
                var kernel = s.Kernel!;
                // Q/K/V (gate/up) of one type share a kernel and so the group's tables.
                var shared = -1;
                for (var j = 0; j < i && shared < 0; j++)
                    shared = _segments[j].Kernel == kernel ? j : -1;
                if (shared < 0)
                    states[i] = (nint)input.PrepareForThread(kernel, first, tokens, threadIndex, out strides[i]);
                else
                    (states[i], strides[i]) = (states[shared], strides[shared]);
                var tile = Math.Max(RowTile, kernel.RowTile);
                var y = s.Y + (long)first * s.Rows;
                for (var r = 0; r < s.Rows; r += tile)
                    kernel.MatMat(s.Weights + r * s.RowBytes, s.RowBytes, Math.Min(tile, s.Rows - r), (byte*)states[i], strides[i], tokens,
                        s.Columns, y + r, s.Rows);
            }
        }
    }

    public void Execute(int threadIndex, int threadCount)
    {
        if (_byGroups is not null)
        {
            ExecuteTokenGroups(threadIndex, threadCount);
            return;
        }
        if (threadCount == 1)
        {
            ExecuteRows(0, _totalRows, 0);
            return;
        }
        // Each thread walks its own contiguous share chunk by chunk, then takes the chunks the others have not
        // started: two threads given equal rows do not finish together (a profile of two-thread decode had the
        // worker spinning 27 % of its time, waiting for the caller's larger kernel time). Owning a share keeps each
        // thread's weight stream contiguous (chunks dealt out in turn broke it every chunk). Every row is still
        // computed by one kernel call over a tile-aligned range, so results do not depend on who takes a chunk.
        for (var k = 0; k < threadCount; k++)
        {
            var owner = (threadIndex + k) % threadCount;
            var next = _nextChunk[owner];
            while (true)
            {
                var slot = Interlocked.Increment(ref next.Value) - 1;
                if (slot >= _chunksPerThread - 1 + _tailPieces)
                    break;
                var shareEnd = Math.Min(_totalRows, (owner + 1) * _chunksPerThread * _chunkRows);
                var start = (owner * _chunksPerThread + Math.Min(slot, _chunksPerThread - 1)) * _chunkRows;
                var end = start + _chunkRows;
                if (slot >= _chunksPerThread - 1)
                {
                    start += (slot - _chunksPerThread + 1) * _tailRows;
                    end = start + _tailRows;
                }
                if (start >= shareEnd)
                    break;
                ExecuteRows(start, Math.Min(shareEnd, end), threadIndex);
            }
        }
    }

    private void ExecuteRows(int start, int end, int threadIndex)
    {
        for (var i = 0; i < _segmentCount && start < end; i++)
        {
            ref var s = ref _segments[i];
            var first = Math.Max(start, s.Offset) - s.Offset;
            var last = Math.Min(end, s.Offset + s.Rows) - s.Offset;
            if (first < last)
                Execute(ref s, first, last, threadIndex);
        }
    }

    private void Execute(ref Segment s, int start, int end, int threadIndex)
    {
        var kernel = s.Kernel!;
        if (_tokens == 1)
        {
            var states = s.PerThreadStates ? s.States + (long)threadIndex * s.StateStride : s.States;
            kernel.MatVec(s.Weights + start * s.RowBytes, s.RowBytes, end - start, states, s.Columns, s.Y + start);
            return;
        }
        var tile = Math.Max(RowTile, kernel.RowTile);
        var group = TokenGroup(s.StateStride, _tokens);
        for (var t = 0; t < _tokens; t += group)
        {
            var tokens = Math.Min(group, _tokens - t);
            var states = s.States + (long)t * s.StateStride;
            var y = s.Y + (long)t * s.Rows;
            for (var r = start; r < end; r += tile)
            {
                var count = Math.Min(tile, end - r);
                kernel.MatMat(s.Weights + r * s.RowBytes, s.RowBytes, count, states, s.StateStride, tokens, s.Columns, y + r, s.Rows);
            }
        }
    }

    /// <summary>
    /// Tokens whose prepared inputs a thread walks its rows with at once. Each row tile is read against every
    /// token of the group, so the group's inputs must stay in cache while the tiles stream past: all tokens for
    /// int8 rows (2-9 KB each), but a lookup-table kernel's tables take 100-400 KB per token, and 128 tokens of
    /// them (13-51 MB) re-read from memory for every 16-row tile made its prefill slower than its decode (llama-1b
    /// TQ1_0 tables, one thread: pp16 230 t/s, pp128 122). Beyond the group the weights are read again, from
    /// L3 for the 1-10 MB matrices of a thread's share. Whole multiples of 4 tokens, the GEMM tiles' width.
    /// </summary>
    internal static int TokenGroup(int stateStride, int tokens)
    {
        var fit = (int)Math.Min(tokens, TokenGroupBytes / Math.Max(1, stateStride));
        return fit >= tokens ? tokens : Math.Min(tokens, Math.Max(4, fit / 4 * 4));
    }
}

/// <summary>An int alone on its cache lines, so the threads' increments do not evict the job's read-only fields.</summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal sealed class PaddedCounter
{
    [FieldOffset(64)]
    public int Value;
}
