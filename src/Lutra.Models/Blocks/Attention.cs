using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Kernels;
using Lutra.Core.Threading;

namespace Lutra.Models.Blocks;

/// <summary>
/// Causal multi-head attention over the KV cache, tiled over the cached positions and split over the compute pool.
/// A task is one KV head with a block of query tokens (every query head of the GQA group at once): each tile of
/// <see cref="KeyTile"/> positions (K already transposed by the cache layout: read in place for the F32 cache,
/// widened once for the F16 cache) serves every query row of the task, and the scores are computed 64 positions
/// per vector pass. Decode (one token) splits long contexts into fixed chunks of <see cref="DecodeChunk"/>
/// positions whose partial states are merged afterwards; the split depends only on the length, never on the
/// thread count, so results are the same for any thread count. <see cref="KvCache.Attend"/> stays the scalar
/// reference.
/// </summary>
/// <remarks>
/// F32 cache: one pass with an online softmax (FlashAttention style), divided by the sum at the end. F16 cache:
/// llama.cpp's semantics (formats.md §5.4) — Q rounded to f16 before KQ, and the normalized weights p = e·(1/Σe)
/// rounded to f16 before KQV. Rounding p needs the final max and sum first, so a task makes two passes over its
/// tiles: running max and sum, then the rounded weights times V. Prefill recomputes the scores in the second pass
/// (storing them would take tokens × context floats); decode keeps them (n_head × context floats in all), so each
/// K tile is widened and scored once and the second pass only reads V. Rounding the unnormalized weights of a
/// one-pass online softmax instead measurably moved the logits away from llama.cpp's (mean |Δ| 2.5× larger on
/// tiny-synth-F32).
/// </remarks>
public sealed unsafe class AttentionWork : IComputeWork
{
    /// <summary>Cached positions per tile: the K cache's tile (read in place for the F32 cache); a multiple of four vectors.</summary>
    public const int KeyTile = KvCache.Tile;

    /// <summary>
    /// Query rows (tokens × heads of a GQA group) per prefill task: the converted K/V tiles serve this many rows, and
    /// a batch still yields several tasks per KV head for the threads.
    /// </summary>
    public const int RowsPerTask = 64;

    /// <summary>Positions per decode task.</summary>
    public const int DecodeChunk = 256;

    private const int ScratchAlign = 64;

    private readonly ComputePool _pool;
    private readonly int _headDim;
    private readonly int _headCount;
    private readonly int _groupSize;
    private readonly int _kvHeads;
    private readonly int _maxChunks;
    private readonly int _tokenBlock; // query tokens per prefill task
    private readonly ThreadScratch[] _scratch;
    private readonly byte[] _partialBuffer; // keeps the pinned array behind _partials alive
    private readonly float* _partials; // decode: [head][chunk] × (m, l, acc[headDim])
    private readonly int _partialStride;
    private readonly float[] _headMax; // F16 decode chunks: each head's merged max and sum
    private readonly double[] _headSum;
    private readonly byte[] _scoreBuffer; // keeps the pinned array behind _scores alive
    private readonly float* _scores; // F16 decode: [kv head][chunk][group row][DecodeChunk] scaled scores

    // The current job.
    private KvCache? _cache;
    private int _layer;
    private float* _q;
    private float* _output;
    private int _tokens;
    private int _startPosition;
    private float _scale;
    private int _tokenBlocks;
    private int _chunks;
    private int _taskCount;
    private int _nextTask;
    private Phase _phase;

    private enum Phase
    {
        /// <summary>F32 cache: one pass, online softmax, divided by the sum at the end.</summary>
        Online,
        /// <summary>F16 cache, decode chunks: max and Σ exp of each chunk.</summary>
        Statistics,
        /// <summary>F16 cache, decode chunks: rounded normalized weights · V with the merged statistics.</summary>
        Weighted,
        /// <summary>F16 cache, no split: both passes within one task.</summary>
        TwoPass,
    }

    public AttentionWork(ComputePool pool, int headCount, int headCountKv, int headDim, int contextSize)
    {
        _pool = pool;
        _headDim = headDim;
        _headCount = headCount;
        _kvHeads = headCountKv;
        _groupSize = headCount / headCountKv;
        _maxChunks = (contextSize + DecodeChunk - 1) / DecodeChunk;
        _tokenBlock = Math.Max(1, RowsPerTask / _groupSize);
        _scratch = new ThreadScratch[pool.ThreadCount];
        for (var i = 0; i < _scratch.Length; i++)
            _scratch[i] = new ThreadScratch(_groupSize * _tokenBlock, headDim);
        _partialStride = headDim + 2;
        _headMax = new float[headCount];
        _headSum = new double[headCount];
        _partials = (float*)Pinned(checked(headCount * _maxChunks * _partialStride * sizeof(float)), out _partialBuffer);
        _scores = (float*)Pinned(checked(headCount * _maxChunks * DecodeChunk * sizeof(float)), out _scoreBuffer);
    }

    /// <summary>A pinned, zeroed, 64-byte aligned buffer (kept alive through <paramref name="owner"/>).</summary>
    private static byte* Pinned(int bytes, out byte[] owner)
    {
        owner = GC.AllocateArray<byte>(bytes + ScratchAlign, pinned: true);
        return (byte*)(((nint)Unsafe.AsPointer(ref owner[0]) + ScratchAlign - 1) & ~(nint)(ScratchAlign - 1));
    }

    /// <summary>
    /// output[t][h·d..] = attention of query row t, head h (q: [tokens][n_head·head_dim]) over the cached positions
    /// ≤ <paramref name="startPosition"/> + t of <paramref name="layer"/>.
    /// </summary>
    public void Run(KvCache cache, int layer, ReadOnlySpan<float> q, int tokens, int startPosition, float scale, Span<float> output)
    {
        var qDim = _headCount * _headDim;
        if (q.Length < tokens * qDim || output.Length < tokens * qDim)
            throw new ArgumentException("query or output rows are shorter than tokens × n_head × head_dim");
        fixed (float* qp = q)
        fixed (float* op = output)
        {
            _cache = cache;
            _layer = layer;
            _q = qp;
            _output = op;
            _tokens = tokens;
            _startPosition = startPosition;
            _scale = scale;
            _tokenBlocks = (tokens + _tokenBlock - 1) / _tokenBlock;
            _chunks = tokens == 1 ? (startPosition + 1 + DecodeChunk - 1) / DecodeChunk : 1;
            _taskCount = _kvHeads * _tokenBlocks * _chunks;
            try
            {
                // Scores × head_dim × 2 multiply-adds: small jobs are not worth waking the other threads for.
                var serial = _pool.ThreadCount == 1 || _taskCount == 1 || (long)tokens * (startPosition + tokens) * qDim * 2 < 128 * 1024;
                if (cache.Type == KvCacheType.F32)
                {
                    RunPhase(Phase.Online, serial);
                    if (_chunks > 1)
                        MergeOnlineChunks();
                }
                else if (_chunks == 1)
                {
                    RunPhase(Phase.TwoPass, serial);
                }
                else
                {
                    RunPhase(Phase.Statistics, serial);
                    MergeStatistics();
                    RunPhase(Phase.Weighted, serial);
                    SumWeightedChunks();
                }
            }
            finally
            {
                _cache = null;
                _q = null;
                _output = null;
            }
        }
    }

    private void RunPhase(Phase phase, bool serial)
    {
        _phase = phase;
        _nextTask = 0;
        if (serial)
            Execute(0, 1);
        else
            _pool.Run(this);
    }

    public void Execute(int threadIndex, int threadCount)
    {
        var scratch = _scratch[threadIndex];
        // Tasks are taken dynamically (causal blocks differ in length); each is computed whole by one thread.
        while (true)
        {
            var task = Interlocked.Increment(ref _nextTask) - 1;
            if (task >= _taskCount)
                return;
            var chunk = task % _chunks;
            var block = task / _chunks % _tokenBlocks;
            var kvHead = task / _chunks / _tokenBlocks;
            RunTask(scratch, kvHead, block, chunk);
        }
    }

    private void RunTask(ThreadScratch s, int kvHead, int block, int chunk)
    {
        var cache = _cache!;
        var hd = _headDim;
        var qDim = _headCount * hd;
        var t0 = block * _tokenBlock;
        var tokenCount = Math.Min(_tokenBlock, _tokens - t0);
        var keyStart = chunk * DecodeChunk;
        var keyLimit = _chunks > 1 ? Math.Min(keyStart + DecodeChunk, _startPosition + 1) : _startPosition + t0 + tokenCount;
        var f16 = cache.Type == KvCacheType.F16;
        var rows = _groupSize * tokenCount;

        // Query rows: row = g·tokenCount + t (query head kvHead·G + g, token t0 + t).
        for (var g = 0; g < _groupSize; g++)
        {
            var head = kvHead * _groupSize + g;
            for (var t = 0; t < tokenCount; t++)
            {
                var row = g * tokenCount + t;
                var src = _q + (long)(t0 + t) * qDim + head * hd;
                var dst = s.Queries + row * hd;
                if (f16)
                    RoundToHalf(src, dst, hd);
                else
                    new Span<float>(src, hd).CopyTo(new Span<float>(dst, hd));
                s.Max[row] = float.NegativeInfinity;
                s.Sum[row] = 0;
                new Span<float>(s.Acc + row * hd, hd).Clear();
                if (_phase == Phase.Weighted)
                {
                    // Decode chunks after the statistics pass: every chunk uses the head's global max and sum.
                    s.Max[row] = _headMax[head];
                    s.Sum[row] = _headSum[head];
                }
            }
        }

        if (f16 && _tokens == 1)
        {
            DecodeHalf(s, kvHead, chunk, rows, keyStart, keyLimit);
        }
        else if (_phase == Phase.TwoPass)
        {
            Sweep(s, Phase.Statistics, kvHead, t0, tokenCount, rows, keyStart, keyLimit);
            Sweep(s, Phase.Weighted, kvHead, t0, tokenCount, rows, keyStart, keyLimit);
        }
        else
        {
            Sweep(s, _phase, kvHead, t0, tokenCount, rows, keyStart, keyLimit);
        }

        for (var g = 0; g < _groupSize; g++)
        {
            var head = kvHead * _groupSize + g;
            for (var t = 0; t < tokenCount; t++)
            {
                var row = g * tokenCount + t;
                var acc = s.Acc + row * hd;
                if (_chunks > 1)
                {
                    var slot = Slot(head, chunk);
                    slot[0] = s.Max[row];
                    slot[1] = (float)s.Sum[row];
                    new Span<float>(acc, hd).CopyTo(new Span<float>(slot + 2, hd));
                }
                else
                {
                    // The weighted pass already divided by the sum; the online pass divides here.
                    var inv = f16 ? 1f : (float)(1.0 / s.Sum[row]);
                    var dst = _output + (long)(t0 + t) * qDim + head * hd;
                    for (var d = 0; d < hd; d++)
                        dst[d] = acc[d] * inv;
                }
            }
        }
    }

    private void Sweep(ThreadScratch s, Phase phase, int kvHead, int t0, int tokenCount, int rows, int keyStart, int keyLimit)
    {
        var cache = _cache!;
        var f16 = cache.Type == KvCacheType.F16;
        var hd = _headDim;
        var offset = kvHead * hd;
        var needValues = phase != Phase.Statistics;
        fixed (Half* kh = f16 ? cache.HalfKeys(_layer) : null)
        fixed (Half* vh = f16 ? cache.HalfValues(_layer) : null)
        fixed (float* kf = f16 ? null : cache.FloatKeys(_layer))
        fixed (float* vf = f16 ? null : cache.FloatValues(_layer))
        {
            for (var j0 = keyStart; j0 < keyLimit; j0 += KeyTile)
            {
                var count = Math.Min(KeyTile, keyLimit - j0);
                // K: this head's [head_dim][64] tile block; V: rows of head_dim values, position-major.
                var keyIndex = cache.KeyIndex(j0, offset);
                var valueIndex = (long)j0 * cache.KvDim + offset;
                float* keys, values;
                int valueStride;
                if (f16)
                {
                    WidenKeys((ushort*)kh + keyIndex, s.Keys, count);
                    if (needValues)
                        HalfConversion.ToSingle((ushort*)vh + valueIndex, cache.KvDim, s.Values, hd, count, hd);
                    keys = s.Keys;
                    values = s.Values;
                    valueStride = hd;
                }
                else
                {
                    keys = kf + keyIndex;
                    values = vf + valueIndex;
                    valueStride = cache.KvDim;
                }
                for (var row = 0; row < rows; row++)
                {
                    var t = row % tokenCount;
                    var visible = Math.Min(_startPosition + t0 + t + 1, keyLimit);
                    if (visible <= j0)
                        continue;
                    var valid = Math.Min(count, visible - j0);
                    Scores(s, row, keys, s.Weights);
                    switch (phase)
                    {
                        case Phase.Statistics:
                            AddStatistics(s, row, s.Weights, valid);
                            break;
                        case Phase.Weighted:
                            AddWeighted(s, row, s.Weights, valid, values, valueStride);
                            break;
                        default:
                            AddOnline(s, row, s.Weights, valid, values, valueStride);
                            break;
                    }
                }
            }
        }
    }

    /// <summary>
    /// F16 cache, one query token (rows = the GQA group): the statistics pass widens each K tile once and keeps every
    /// row's scaled scores in the task's store; the weighted pass (the same task for one chunk, a later phase for
    /// several) reads them back and only widens V. The arithmetic and its order are those of the prefill sweeps.
    /// </summary>
    private void DecodeHalf(ThreadScratch s, int kvHead, int chunk, int rows, int keyStart, int keyLimit)
    {
        var cache = _cache!;
        var hd = _headDim;
        var offset = kvHead * hd;
        var scores = _scores + ((long)kvHead * _maxChunks + chunk) * rows * DecodeChunk;
        var fused = FusedDecode && hd % FusedDims == 0 && KernelIsa.Selected >= InstructionSet.Avx512 && Vector512.IsHardwareAccelerated;
        fixed (Half* kh = cache.HalfKeys(_layer))
        fixed (Half* vh = cache.HalfValues(_layer))
        {
            if (_phase != Phase.Weighted)
            {
                for (var j0 = keyStart; j0 < keyLimit; j0 += KeyTile)
                {
                    var count = Math.Min(KeyTile, keyLimit - j0);
                    var tileScores = scores + (j0 - keyStart);
                    if (fused)
                    {
                        FusedScores((ushort*)kh + cache.KeyIndex(j0, offset), s.Queries, rows, tileScores);
                    }
                    else
                    {
                        WidenKeys((ushort*)kh + cache.KeyIndex(j0, offset), s.Keys, count);
                        for (var row = 0; row < rows; row++)
                            Scores(s, row, s.Keys, tileScores + row * DecodeChunk);
                    }
                    for (var row = 0; row < rows; row++)
                        AddStatistics(s, row, tileScores + row * DecodeChunk, count);
                }
            }
            if (_phase != Phase.Statistics)
            {
                for (var j0 = keyStart; j0 < keyLimit; j0 += KeyTile)
                {
                    var count = Math.Min(KeyTile, keyLimit - j0);
                    var valueIndex = (long)j0 * cache.KvDim + offset;
                    var tileScores = scores + (j0 - keyStart);
                    if (fused)
                    {
                        for (var row = 0; row < rows; row++)
                            NormalizedWeights(s, row, tileScores + row * DecodeChunk, count);
                        FusedValues((ushort*)vh + valueIndex, cache.KvDim, tileScores, rows, count, s.Acc);
                        continue;
                    }
                    HalfConversion.ToSingle((ushort*)vh + valueIndex, cache.KvDim, s.Values, hd, count, hd);
                    for (var row = 0; row < rows; row++)
                        AddWeighted(s, row, tileScores + row * DecodeChunk, count, s.Values, hd);
                }
            }
        }
    }

    /// <summary>
    /// Whether one-token F16 decode widens K and V inside the score and value loops (<see cref="FusedScores"/>,
    /// <see cref="FusedValues"/>) where it can (AVX-512, head_dim a multiple of 64); off, it takes the tile-buffer
    /// path, which the tests compare it with bit for bit.
    /// </summary>
    internal bool FusedDecode { get; init; } = true;

    /// <summary>Channels per pass of <see cref="FusedValues"/>: four 512-bit vectors, times four rows of accumulators.</summary>
    private const int FusedDims = 64;

    /// <summary>
    /// Scaled scores of <paramref name="rows"/> query rows against one f16 K tile ([head_dim][64]): each channel's 64
    /// positions are widened once and serve up to four rows (16 accumulator chains), instead of being widened into a
    /// buffer and read back per row. Per position the same FMAs in the same channel order as <see cref="Scores"/>,
    /// so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private void FusedScores(ushort* tile, float* queries, int rows, float* scores)
    {
        var hd = _headDim;
        var scale = Vector512.Create(_scale);
        var row = 0;
        for (; row + 4 <= rows; row += 4)
        {
            var q0 = queries + row * hd;
            var q1 = q0 + hd;
            var q2 = q1 + hd;
            var q3 = q2 + hd;
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            var k = tile;
            for (var d = 0; d < hd; d++, k += KeyTile)
            {
                var keys = new Widened64(k);
                keys.MultiplyAdd(q0[d], ref a00, ref a01, ref a02, ref a03);
                keys.MultiplyAdd(q1[d], ref a10, ref a11, ref a12, ref a13);
                keys.MultiplyAdd(q2[d], ref a20, ref a21, ref a22, ref a23);
                keys.MultiplyAdd(q3[d], ref a30, ref a31, ref a32, ref a33);
            }
            StoreScores(scores + row * DecodeChunk, a00, a01, a02, a03, scale);
            StoreScores(scores + (row + 1) * DecodeChunk, a10, a11, a12, a13, scale);
            StoreScores(scores + (row + 2) * DecodeChunk, a20, a21, a22, a23, scale);
            StoreScores(scores + (row + 3) * DecodeChunk, a30, a31, a32, a33, scale);
        }
        for (; row < rows; row++)
        {
            var q = queries + row * hd;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var k = tile;
            for (var d = 0; d < hd; d++, k += KeyTile)
                new Widened64(k).MultiplyAdd(q[d], ref a0, ref a1, ref a2, ref a3);
            StoreScores(scores + row * DecodeChunk, a0, a1, a2, a3, scale);
        }
    }

    /// <summary>V rows ahead of the one in use that <see cref="FusedValues"/> prefetches: its rows are KvDim halves apart.</summary>
    private const int ValuePrefetchRows = 8;

    /// <summary>The two cache lines of 64 f16 channels of one V row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchValueRow(ushort* row)
    {
        Sse.Prefetch0(row);
        Sse.Prefetch0(row + 32);
    }

    /// <summary>64 consecutive f16 values widened to four float vectors (exactly: <see cref="FloatKernels.HalfToSingle"/>).</summary>
    private readonly struct Widened64
    {
        private readonly Vector512<float> _v0, _v1, _v2, _v3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Widened64(ushort* halves)
        {
            _v0 = FloatKernels.HalfToSingle(Vector256.Load(halves));
            _v1 = FloatKernels.HalfToSingle(Vector256.Load(halves + 16));
            _v2 = FloatKernels.HalfToSingle(Vector256.Load(halves + 32));
            _v3 = FloatKernels.HalfToSingle(Vector256.Load(halves + 48));
        }

        /// <summary>aᵢ = factor · vᵢ + aᵢ (one FMA per vector).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void MultiplyAdd(float factor, ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3)
        {
            var b = Vector512.Create(factor);
            a0 = Vector512.FusedMultiplyAdd(b, _v0, a0);
            a1 = Vector512.FusedMultiplyAdd(b, _v1, a1);
            a2 = Vector512.FusedMultiplyAdd(b, _v2, a2);
            a3 = Vector512.FusedMultiplyAdd(b, _v3, a3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScores(float* w, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, Vector512<float> scale)
    {
        (a0 * scale).Store(w);
        (a1 * scale).Store(w + 16);
        (a2 * scale).Store(w + 32);
        (a3 * scale).Store(w + 48);
    }

    /// <summary>
    /// acc += Σ_j p[row][j] · V[j] for <paramref name="rows"/> rows over one tile of f16 V rows (<paramref name="stride"/>
    /// halves apart): 64 channels of a position are widened once and serve up to four rows. Per channel the same FMAs
    /// in the same position order as <see cref="AccumulateValues"/> (with correction 1), so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private void FusedValues(ushort* values, long stride, float* weights, int rows, int count, float* acc)
    {
        var hd = _headDim;
        for (var d0 = 0; d0 < hd; d0 += FusedDims)
        {
            var row = 0;
            for (; row + 4 <= rows; row += 4)
            {
                var o0 = acc + row * hd + d0;
                var o1 = o0 + hd;
                var o2 = o1 + hd;
                var o3 = o2 + hd;
                var p0 = weights + row * DecodeChunk;
                var p1 = p0 + DecodeChunk;
                var p2 = p1 + DecodeChunk;
                var p3 = p2 + DecodeChunk;
                var a00 = Vector512.Load(o0); var a01 = Vector512.Load(o0 + 16); var a02 = Vector512.Load(o0 + 32); var a03 = Vector512.Load(o0 + 48);
                var a10 = Vector512.Load(o1); var a11 = Vector512.Load(o1 + 16); var a12 = Vector512.Load(o1 + 32); var a13 = Vector512.Load(o1 + 48);
                var a20 = Vector512.Load(o2); var a21 = Vector512.Load(o2 + 16); var a22 = Vector512.Load(o2 + 32); var a23 = Vector512.Load(o2 + 48);
                var a30 = Vector512.Load(o3); var a31 = Vector512.Load(o3 + 16); var a32 = Vector512.Load(o3 + 32); var a33 = Vector512.Load(o3 + 48);
                var v = values + d0;
                for (var j = 0; j < count; j++, v += stride)
                {
                    PrefetchValueRow(v + ValuePrefetchRows * stride);
                    var row64 = new Widened64(v);
                    row64.MultiplyAdd(p0[j], ref a00, ref a01, ref a02, ref a03);
                    row64.MultiplyAdd(p1[j], ref a10, ref a11, ref a12, ref a13);
                    row64.MultiplyAdd(p2[j], ref a20, ref a21, ref a22, ref a23);
                    row64.MultiplyAdd(p3[j], ref a30, ref a31, ref a32, ref a33);
                }
                a00.Store(o0); a01.Store(o0 + 16); a02.Store(o0 + 32); a03.Store(o0 + 48);
                a10.Store(o1); a11.Store(o1 + 16); a12.Store(o1 + 32); a13.Store(o1 + 48);
                a20.Store(o2); a21.Store(o2 + 16); a22.Store(o2 + 32); a23.Store(o2 + 48);
                a30.Store(o3); a31.Store(o3 + 16); a32.Store(o3 + 32); a33.Store(o3 + 48);
            }
            for (; row < rows; row++)
            {
                var o = acc + row * hd + d0;
                var p = weights + row * DecodeChunk;
                var a0 = Vector512.Load(o); var a1 = Vector512.Load(o + 16); var a2 = Vector512.Load(o + 32); var a3 = Vector512.Load(o + 48);
                var v = values + d0;
                for (var j = 0; j < count; j++, v += stride)
                {
                    PrefetchValueRow(v + ValuePrefetchRows * stride);
                    new Widened64(v).MultiplyAdd(p[j], ref a0, ref a1, ref a2, ref a3);
                }
                a0.Store(o); a1.Store(o + 16); a2.Store(o + 32); a3.Store(o + 48);
            }
        }
    }

    /// <summary>
    /// Widens the first <paramref name="count"/> positions of an f16 K tile ([head_dim][KeyTile]), rounded up to 16
    /// (the widest conversion step); the scores of the positions past them are computed but never used.
    /// </summary>
    private void WidenKeys(ushort* tile, float* keys, int count) =>
        HalfConversion.ToSingle(tile, KeyTile, keys, KeyTile, _headDim, (count + 15) & ~15);

    /// <summary>
    /// The scaled scores of one query row against the whole loaded tile, vectorized over positions, in eight
    /// independent accumulator chains (FMA latency would otherwise bound the loop).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Scores(ThreadScratch s, int row, float* kt, float* w)
    {
        var hd = _headDim;
        var width = Vector<float>.Count;
        var q = s.Queries + row * hd;
        var scale = new Vector<float>(_scale);
        if (8 * width > KeyTile)
        {
            // 512-bit Vector<T>: the tile is four vectors wide.
            ScoresFourWide(q, kt, w, scale);
            return;
        }
        for (var j = 0; j < KeyTile; j += 8 * width)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            var k = kt + j;
            for (var d = 0; d < hd; d++, k += KeyTile)
            {
                var qd = new Vector<float>(q[d]);
                a0 = Vector.FusedMultiplyAdd(qd, Vector.Load(k), a0);
                a1 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + width), a1);
                a2 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 2 * width), a2);
                a3 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 3 * width), a3);
                a4 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 4 * width), a4);
                a5 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 5 * width), a5);
                a6 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 6 * width), a6);
                a7 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 7 * width), a7);
            }
            (a0 * scale).Store(w + j);
            (a1 * scale).Store(w + j + width);
            (a2 * scale).Store(w + j + 2 * width);
            (a3 * scale).Store(w + j + 3 * width);
            (a4 * scale).Store(w + j + 4 * width);
            (a5 * scale).Store(w + j + 5 * width);
            (a6 * scale).Store(w + j + 6 * width);
            (a7 * scale).Store(w + j + 7 * width);
        }
    }

    private void ScoresFourWide(float* q, float* kt, float* w, Vector<float> scale)
    {
        var width = Vector<float>.Count;
        for (var j = 0; j < KeyTile; j += 4 * width)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var k = kt + j;
            for (var d = 0; d < _headDim; d++, k += KeyTile)
            {
                var qd = new Vector<float>(q[d]);
                a0 = Vector.FusedMultiplyAdd(qd, Vector.Load(k), a0);
                a1 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + width), a1);
                a2 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 2 * width), a2);
                a3 = Vector.FusedMultiplyAdd(qd, Vector.Load(k + 3 * width), a3);
            }
            (a0 * scale).Store(w + j);
            (a1 * scale).Store(w + j + width);
            (a2 * scale).Store(w + j + 2 * width);
            (a3 * scale).Store(w + j + 3 * width);
        }
    }

    /// <summary>Running max and Σ exp(w − max) of a row (the first of the F16 cache's two passes).</summary>
    private static void AddStatistics(ThreadScratch s, int row, float* w, int valid)
    {
        var max = NewMax(s, row, w, valid);
        var sum = ExpSum(w, valid, max, store: false);
        s.Sum[row] = s.Sum[row] * MathF.Exp(s.Max[row] - max) + sum;
        s.Max[row] = max;
    }

    /// <summary>
    /// acc += round_f16(exp(w − max) · (1/Σ)) · V with the row's final max and sum: llama.cpp's non-flash
    /// arithmetic, where P is normalized in f32 and rounded to f16 before KQV.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AddWeighted(ThreadScratch s, int row, float* w, int valid, float* values, int valueStride)
    {
        NormalizedWeights(s, row, w, valid);
        AccumulateValues(s, row, w, valid, 1f, values, valueStride);
    }

    /// <summary>w = round_f16(exp(w − max) · (1/Σ)) in place, with the row's final max and sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NormalizedWeights(ThreadScratch s, int row, float* w, int valid)
    {
        var width = Vector<float>.Count;
        var max = s.Max[row];
        var inv = (float)(1.0 / s.Sum[row]);
        var vmax = new Vector<float>(max);
        var vinv = new Vector<float>(inv);
        var j = 0;
        for (; j + width <= valid; j += width)
            HalfRounding.RoundToHalf(ExpNonPositive(Vector.Load(w + j) - vmax) * vinv).Store(w + j);
        for (; j < valid; j++)
            w[j] = (float)(Half)(MathF.Exp(w[j] - max) * inv);
    }

    /// <summary>One-pass online softmax (the exact F32 cache rounds nothing, so the sum may divide at the end).</summary>
    private void AddOnline(ThreadScratch s, int row, float* w, int valid, float* values, int valueStride)
    {
        var max = NewMax(s, row, w, valid);
        var correction = MathF.Exp(s.Max[row] - max); // 0 on the first tile (old max = −∞)
        var sum = ExpSum(w, valid, max, store: true);
        s.Sum[row] = s.Sum[row] * correction + sum;
        s.Max[row] = max;
        AccumulateValues(s, row, w, valid, correction, values, valueStride);
    }

    private static float NewMax(ThreadScratch s, int row, float* w, int valid)
    {
        var width = Vector<float>.Count;
        var max = new Vector<float>(s.Max[row]);
        var j = 0;
        for (; j + width <= valid; j += width)
            max = Vector.Max(max, Vector.Load(w + j));
        var result = max[0];
        for (var l = 1; l < width; l++)
            result = MathF.Max(result, max[l]);
        for (; j < valid; j++)
            result = MathF.Max(result, w[j]);
        return result;
    }

    /// <summary>
    /// exp(x) for x ≤ 0 (scores minus their max), Cephes-style: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6
    /// polynomial for e^r (about 1 ulp, like expf), then 2^n through the exponent bits; below −87.3 the result is 0.
    /// Inlined and allocation-free, unlike Vector.Exp, whose generic core was seen running unoptimized here.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> ExpNonPositive(Vector<float> x)
    {
        var underflow = Vector.LessThan(x, new Vector<float>(-87.33654f));
        x = Vector.Max(x, new Vector<float>(-87.33654f));
        var n = Vector.Floor(Vector.FusedMultiplyAdd(x, new Vector<float>(1.44269504088896341f), new Vector<float>(0.5f)));
        var r = Vector.FusedMultiplyAdd(n, new Vector<float>(-0.693359375f), x);
        r = Vector.FusedMultiplyAdd(n, new Vector<float>(2.12194440e-4f), r);
        var p = new Vector<float>(1.9875691500E-4f);
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(1.3981999507E-3f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(8.3334519073E-3f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(4.1665795894E-2f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(1.6666665459E-1f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(5.0000001201E-1f));
        var y = Vector.FusedMultiplyAdd(p, r * r, r + Vector<float>.One);
        var scale = ((Vector.ConvertToInt32(n) + new Vector<int>(127)) << 23).As<int, float>();
        return Vector.ConditionalSelect(underflow.As<int, float>(), Vector<float>.Zero, y * scale);
    }

    /// <summary>Σ exp(w − max) over the first <paramref name="valid"/> weights, in double like ggml's softmax sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double ExpSum(float* w, int valid, float max, bool store)
    {
        var width = Vector<float>.Count;
        var vmax = new Vector<float>(max);
        var sum = Vector<float>.Zero;
        var j = 0;
        for (; j + width <= valid; j += width)
        {
            var e = ExpNonPositive(Vector.Load(w + j) - vmax);
            sum += e;
            if (store)
                e.Store(w + j);
        }
        var total = (double)Vector.Sum(sum);
        for (; j < valid; j++)
        {
            var e = MathF.Exp(w[j] - max);
            total += e;
            if (store)
                w[j] = e;
        }
        return total;
    }

    /// <summary>
    /// acc = acc · correction + Σ_j w[j] · V[j] over the tile's first <paramref name="valid"/> positions; eight (then
    /// four) vectors of channels per pass over the positions, so that many FMA chains run side by side (each chain
    /// waits on its FMA's latency, one position at a time).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateValues(ThreadScratch s, int row, float* w, int valid, float correction, float* vr, int stride)
    {
        var hd = _headDim;
        var width = Vector<float>.Count;
        var acc = s.Acc + row * hd;
        var c = new Vector<float>(correction);
        var d0 = 0;
        for (; d0 + 8 * width <= hd; d0 += 8 * width)
        {
            var o0 = Vector.Load(acc + d0) * c;
            var o1 = Vector.Load(acc + d0 + width) * c;
            var o2 = Vector.Load(acc + d0 + 2 * width) * c;
            var o3 = Vector.Load(acc + d0 + 3 * width) * c;
            var o4 = Vector.Load(acc + d0 + 4 * width) * c;
            var o5 = Vector.Load(acc + d0 + 5 * width) * c;
            var o6 = Vector.Load(acc + d0 + 6 * width) * c;
            var o7 = Vector.Load(acc + d0 + 7 * width) * c;
            var v = vr + d0;
            for (var j = 0; j < valid; j++, v += stride)
            {
                var p = new Vector<float>(w[j]);
                o0 = Vector.FusedMultiplyAdd(p, Vector.Load(v), o0);
                o1 = Vector.FusedMultiplyAdd(p, Vector.Load(v + width), o1);
                o2 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 2 * width), o2);
                o3 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 3 * width), o3);
                o4 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 4 * width), o4);
                o5 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 5 * width), o5);
                o6 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 6 * width), o6);
                o7 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 7 * width), o7);
            }
            o0.Store(acc + d0);
            o1.Store(acc + d0 + width);
            o2.Store(acc + d0 + 2 * width);
            o3.Store(acc + d0 + 3 * width);
            o4.Store(acc + d0 + 4 * width);
            o5.Store(acc + d0 + 5 * width);
            o6.Store(acc + d0 + 6 * width);
            o7.Store(acc + d0 + 7 * width);
        }
        for (; d0 + 4 * width <= hd; d0 += 4 * width)
        {
            var o0 = Vector.Load(acc + d0) * c;
            var o1 = Vector.Load(acc + d0 + width) * c;
            var o2 = Vector.Load(acc + d0 + 2 * width) * c;
            var o3 = Vector.Load(acc + d0 + 3 * width) * c;
            var v = vr + d0;
            for (var j = 0; j < valid; j++, v += stride)
            {
                var p = new Vector<float>(w[j]);
                o0 = Vector.FusedMultiplyAdd(p, Vector.Load(v), o0);
                o1 = Vector.FusedMultiplyAdd(p, Vector.Load(v + width), o1);
                o2 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 2 * width), o2);
                o3 = Vector.FusedMultiplyAdd(p, Vector.Load(v + 3 * width), o3);
            }
            o0.Store(acc + d0);
            o1.Store(acc + d0 + width);
            o2.Store(acc + d0 + 2 * width);
            o3.Store(acc + d0 + 3 * width);
        }
        for (; d0 + width <= hd; d0 += width)
        {
            var o = Vector.Load(acc + d0) * c;
            for (var j = 0; j < valid; j++)
                o = Vector.FusedMultiplyAdd(new Vector<float>(w[j]), Vector.Load(vr + (long)j * stride + d0), o);
            o.Store(acc + d0);
        }
        for (; d0 < hd; d0++)
        {
            var o = acc[d0] * correction;
            for (var j = 0; j < valid; j++)
                o = MathF.FusedMultiplyAdd(w[j], vr[(long)j * stride + d0], o);
            acc[d0] = o;
        }
    }

    /// <summary>dst = (float)(Half)src over <paramref name="count"/> floats.</summary>
    private static void RoundToHalf(float* src, float* dst, int count)
    {
        var width = Vector<float>.Count;
        var i = 0;
        for (; i + width <= count; i += width)
            HalfRounding.RoundToHalf(Vector.Load(src + i)).Store(dst + i);
        for (; i < count; i++)
            dst[i] = (float)(Half)src[i];
    }

    private float* Slot(int head, int chunk) => _partials + ((long)head * _maxChunks + chunk) * _partialStride;

    /// <summary>F32 decode chunks: rescales every chunk's (max, sum, acc) to the common max and adds them in order.</summary>
    private void MergeOnlineChunks()
    {
        var hd = _headDim;
        for (var h = 0; h < _headCount; h++)
        {
            var max = float.NegativeInfinity;
            for (var c = 0; c < _chunks; c++)
                max = MathF.Max(max, Slot(h, c)[0]);
            var sum = 0.0;
            var dst = _output + h * hd;
            new Span<float>(dst, hd).Clear();
            for (var c = 0; c < _chunks; c++)
            {
                var slot = Slot(h, c);
                var weight = MathF.Exp(slot[0] - max);
                sum += slot[1] * (double)weight;
                for (var d = 0; d < hd; d++)
                    dst[d] += slot[2 + d] * weight;
            }
            var inv = (float)(1.0 / sum);
            for (var d = 0; d < hd; d++)
                dst[d] *= inv;
        }
    }

    /// <summary>F16 decode chunks: each head's global max and Σ exp(w − max) from the chunks' statistics.</summary>
    private void MergeStatistics()
    {
        for (var h = 0; h < _headCount; h++)
        {
            var max = float.NegativeInfinity;
            for (var c = 0; c < _chunks; c++)
                max = MathF.Max(max, Slot(h, c)[0]);
            var sum = 0.0;
            for (var c = 0; c < _chunks; c++)
                sum += Slot(h, c)[1] * (double)MathF.Exp(Slot(h, c)[0] - max);
            _headMax[h] = max;
            _headSum[h] = sum;
        }
    }

    /// <summary>F16 decode chunks: the weighted chunks are already normalized; their sum (in chunk order) is the output.</summary>
    private void SumWeightedChunks()
    {
        var hd = _headDim;
        for (var h = 0; h < _headCount; h++)
        {
            var dst = _output + h * hd;
            new Span<float>(dst, hd).Clear();
            for (var c = 0; c < _chunks; c++)
            {
                var slot = Slot(h, c);
                for (var d = 0; d < hd; d++)
                    dst[d] += slot[2 + d];
            }
        }
    }

    /// <summary>One thread's tile buffers and query-row states, allocated once.</summary>
    private sealed class ThreadScratch
    {
        private readonly byte[] _owner; // keeps the pinned block alive

        public ThreadScratch(int rows, int headDim)
        {
            var floats = rows * headDim * 2 + headDim * KeyTile * 2 + KeyTile + rows + 64;
            var bytes = checked(floats * sizeof(float) + rows * sizeof(double) + 6 * ScratchAlign);
            var p = Pinned(bytes, out _owner);
            Queries = Take<float>(ref p, rows * headDim);
            Acc = Take<float>(ref p, rows * headDim);
            Keys = Take<float>(ref p, headDim * KeyTile);
            Values = Take<float>(ref p, headDim * KeyTile);
            Weights = Take<float>(ref p, KeyTile);
            Max = Take<float>(ref p, rows);
            Sum = Take<double>(ref p, rows);
        }

        public float* Queries { get; }
        public float* Acc { get; }
        public float* Keys { get; }
        public float* Values { get; }
        public float* Weights { get; }
        public float* Max { get; }
        public double* Sum { get; }

        private static T* Take<T>(ref byte* p, int count) where T : unmanaged
        {
            var result = (T*)p;
            p += (count * sizeof(T) + ScratchAlign - 1) / ScratchAlign * ScratchAlign;
            return result;
        }
    }
}

/// <summary>
/// f16 → f32 for KV tiles: the AVX-512 or AVX2 bit-exact widening when the selected instruction set has it (so
/// LUTRA_ISA exercises every path), else the lookup table.
/// </summary>
internal static unsafe class HalfConversion
{
    /// <summary>
    /// Widens <paramref name="rows"/> rows of <paramref name="count"/> values: source rows <paramref name="srcStride"/>
    /// halves apart, destination rows <paramref name="dstStride"/> floats apart (one call per tile).
    /// </summary>
    public static void ToSingle(ushort* src, long srcStride, float* dst, int dstStride, int rows, int count)
    {
        var isa = KernelIsa.Selected;
        fixed (float* table = KvCache.HalfTable)
        {
            for (var r = 0; r < rows; r++, src += srcStride, dst += dstStride)
            {
                var i = 0;
                if (isa >= InstructionSet.Avx512)
                {
                    for (; i + 16 <= count; i += 16)
                        FloatKernels.HalfToSingle(Vector256.Load(src + i)).Store(dst + i);
                }
                else if (isa >= InstructionSet.Avx2)
                {
                    for (; i + 8 <= count; i += 8)
                        FloatKernelsAvx2.HalfToSingle(Vector128.Load(src + i)).Store(dst + i);
                }
                for (; i < count; i++)
                    dst[i] = table[src[i]];
            }
        }
    }
}
