using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations over 16-row interleaved tiles (see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile block (544 bytes, 16 GGUF blocks' worth): the 16 rows' f16 scales, then eight 64-byte groups; group j
/// holds, in int32 lane r, quants 4j..4j+3 of row r. Two integer paths over that layout:
/// </para>
/// <list type="bullet">
/// <item>AVX-VNNI (where the CPU has it, Zen 5): the quants are stored as q + 128 (the sign bit flipped), because
/// vpdpbusd multiplies unsigned weight bytes by signed activation bytes; the +128 comes back out through the seed
/// −128·Σa of each block's integer sums (from the activation sidecar). .NET exposes vpdpbusd only in 256-bit form,
/// so the integer work runs on two halves of eight rows; on AVX-512 machines the float step (and the GEMM tile's
/// token step) joins them into one 512-bit vector.</item>
/// <item>Sign transfer (CPUs without AVX-VNNI, such as Zen 4, whose 512-bit VNNI .NET does not expose): the quants
/// stay signed and q·a is computed as |q|·(±a), the activation negated where q &lt; 0, so that vpmaddubsw (unsigned ×
/// signed bytes) sees |q| ≤ 128 and |±a| ≤ 127: a pair sums to at most 2·128·127 &lt; 2¹⁵, no saturation, and q = −128
/// is exact. vpmaddwd by one widens the pairs to int32 lanes. AVX-512 BW (vpabsb, a byte mask from the sign, a
/// masked blend) runs all 16 rows in one 512-bit vector; AVX2 has vpsignb for the same step on halves.</item>
/// </list>
/// <para>
/// Exact: per row the float arithmetic is the reference's, sumᵢ·(d_w·d_a) added in block order, so every output
/// equals <see cref="QuantReference.Dot"/> bit for bit, alone or in a batch, on either path. The sidecar holds
/// d_a·2¹¹², so that d_w·d_a is one multiply of the unscaled f16 bit pattern (<see cref="InterleavedSteps.HalfToSingle"/>
/// without its 2¹¹²): the same real product, rounded once. Rows after the last whole tile keep the GGUF layout and
/// run through an exact per-row loop.
/// </para>
/// </summary>
public sealed unsafe class Q8_0InterleavedMatVec(InstructionSet isa, bool avxVnni)
    : MatVecKernel(GgmlType.Q8_0, isa, avxVnni ? "AVX-VNNI 16-row interleaved"
        : isa >= InstructionSet.Avx512 ? "AVX-512 BW sign-transfer 16-row interleaved" : "AVX2 sign-transfer 16-row interleaved")
{
    private const int BlockBytes = 34;
    private const int TileBlockBytes = TileRows * BlockBytes;

    /// <summary>AVX-VNNI where the CPU has it, else the sign-transfer path.</summary>
    public Q8_0InterleavedMatVec(InstructionSet isa) : this(isa, AvxVnni.IsSupported)
    {
    }

    /// <summary>AVX2 or AVX-512 (BW) on this CPU, plus AVX-VNNI for the VNNI path.</summary>
    public static bool IsSupported(InstructionSet isa, bool avxVnni) =>
        isa >= InstructionSet.Avx2 && KernelIsa.IsSupported(isa) && (!avxVnni || AvxVnni.IsSupported);

    private readonly bool _avxVnni = avxVnni;

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) =>
        InterleavedSteps.PrepareActivations(Isa, x, n, state, StandardActivationBytes(n), _avxVnni ? -128 : 0, TwoTo112);

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, _avxVnni ? 0x8080_8080u : 0u);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = state + SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        if (!_avxVnni)
        {
            if (Isa >= InstructionSet.Avx512)
                TilesAvx512Sign(weights, rowBytes, tiles, state, sidecar, blocks, y);
            else
                TilesAvx2<SignDot>(weights, rowBytes, tiles, state, sidecar, blocks, y);
            for (var r = tiles * TileRows; r < rows; r++)
                y[r] = RowDot<SignDot>(weights + r * rowBytes, state, sidecar, blocks);
            return;
        }
        if (Isa >= InstructionSet.Avx512)
            TilesAvx512(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else
            TilesAvx2<VnniDot>(weights, rowBytes, tiles, state, sidecar, blocks, y);
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = RowDot<VnniDot>(weights + r * rowBytes, state, sidecar, blocks);
    }

    /// <summary>Whole tiles, AVX-VNNI; the float work of all 16 rows in one 512-bit step (one scale conversion, one sum conversion).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchQ8_0TileBlock(w);
                var seed = Vector256.Create(*(int*)s);
                var a0 = Broadcast(a);
                var a1 = Broadcast(a + 4);
                var a2 = Broadcast(a + 8);
                var a3 = Broadcast(a + 12);
                var a4 = Broadcast(a + 16);
                var a5 = Broadcast(a + 20);
                var a6 = Broadcast(a + 24);
                var a7 = Broadcast(a + 28);
                var low = HalfTileSums<VnniDot>(w + 2 * TileRows, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                var high = HalfTileSums<VnniDot>(w + 2 * TileRows + 32, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                acc += Vector512.ConvertToSingle(VectorJoin.Join(low, high)) * (WeightScales512(w) * Vector512.Create(*(float*)(s + 4)));
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Whole tiles, AVX-512 BW sign transfer: each 64-byte group is one vector of all 16 rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512Sign(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchQ8_0TileBlock(w);
                var q = w + 2 * TileRows;
                // Two chains, so the multiply latencies overlap.
                var even = SignGroup512(Vector512.Load((sbyte*)q), a);
                var odd = SignGroup512(Vector512.Load((sbyte*)(q + 64)), a + 4);
                even += SignGroup512(Vector512.Load((sbyte*)(q + 128)), a + 8);
                odd += SignGroup512(Vector512.Load((sbyte*)(q + 192)), a + 12);
                even += SignGroup512(Vector512.Load((sbyte*)(q + 256)), a + 16);
                odd += SignGroup512(Vector512.Load((sbyte*)(q + 320)), a + 20);
                even += SignGroup512(Vector512.Load((sbyte*)(q + 384)), a + 24);
                odd += SignGroup512(Vector512.Load((sbyte*)(q + 448)), a + 28);
                acc += Vector512.ConvertToSingle(even + odd) * (WeightScales512(w) * Vector512.Create(*(float*)(s + 4)));
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// Per int32 lane r, Σ of the four products q·a of row r in one group: |q|·(±a) by vpmaddubsw (a pair at most
    /// 2·128·127, no saturation), then vpmaddwd by one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> SignGroup512(Vector512<sbyte> quants, byte* activations)
    {
        var a = Broadcast512(activations);
        var signed = Vector512.ConditionalSelect(Vector512.LessThan(quants, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - a, a);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(quants), signed), Vector512<short>.One);
    }

    /// <summary>The same sums as <see cref="SignGroup512(Vector512{sbyte}, byte*)"/> with |q| and the sign mask given (the GEMM tile computes them once for four tokens).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> SignGroup512(Vector512<byte> magnitudes, Vector512<sbyte> negative, byte* activations)
    {
        var a = Broadcast512(activations);
        var signed = Vector512.ConditionalSelect(negative, Vector512<sbyte>.Zero - a, a);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, signed), Vector512<short>.One);
    }

    /// <summary>Whole tiles with 256-bit instructions only (AVX2 machines); the same arithmetic per lane.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2<TDot>(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
        where TDot : struct, IGroupDot
    {
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchQ8_0TileBlock(w);
                var seed = Vector256.Create(*(int*)s);
                var da = Vector256.Create(*(float*)(s + 4));
                var a0 = Broadcast(a);
                var a1 = Broadcast(a + 4);
                var a2 = Broadcast(a + 8);
                var a3 = Broadcast(a + 12);
                var a4 = Broadcast(a + 16);
                var a5 = Broadcast(a + 20);
                var a6 = Broadcast(a + 24);
                var a7 = Broadcast(a + 28);
                var lowSums = HalfTileSums<TDot>(w + 2 * TileRows, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                var highSums = HalfTileSums<TDot>(w + 2 * TileRows + 32, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                low += Vector256.ConvertToSingle(lowSums) * (WeightScales(w, signAndMagnitude) * da);
                high += Vector256.ConvertToSingle(highSums) * (WeightScales(w + TileRows, signAndMagnitude) * da);
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>Eight rows' integer sums of one block (seeded: −128·Σa on the VNNI path, 0 on the sign path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> HalfTileSums<TDot>(byte* quants, Vector256<int> seed,
        Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
        Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7) where TDot : struct, IGroupDot =>
        TDot.Dot8(seed,
            Vector256.Load(quants), Vector256.Load(quants + 64), Vector256.Load(quants + 128), Vector256.Load(quants + 192),
            Vector256.Load(quants + 256), Vector256.Load(quants + 320), Vector256.Load(quants + 384), Vector256.Load(quants + 448),
            a0, a1, a2, a3, a4, a5, a6, a7);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var sidecarOffset = SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            if (Isa >= InstructionSet.Avx512)
            {
                if (_avxVnni)
                    GemmTilesAvx512(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
                else
                    GemmTilesAvx512Sign(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            }
            else if (_avxVnni)
                GemmTilesAvx2<VnniDot>(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else
                GemmTilesAvx2<SignDot>(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            for (var r = tiles * TileRows; r < rows; r++)
            {
                for (var k = 0; k < 4; k++)
                {
                    var state = s0 + (long)k * stateStride;
                    y[(t + k) * yStride + r] = _avxVnni
                        ? RowDot<VnniDot>(weights + r * rowBytes, state, state + sidecarOffset, blocks)
                        : RowDot<SignDot>(weights + r * rowBytes, state, state + sidecarOffset, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>
    /// GEMM tile, 256-bit only: four tokens × eight rows per pass. Each half tile's quants are loaded once per block
    /// for four tokens; per token the arithmetic is MatVec's, so results do not depend on batching.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void GemmTilesAvx2<TDot>(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
        where TDot : struct, IGroupDot
    {
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            for (var half = 0; half < 2; half++)
            {
                var w = weights + tile * TileRows * rowBytes;
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (var b = 0; b < blocks; b++, w += TileBlockBytes)
                {
                    var q = w + 2 * TileRows + 32 * half;
                    var v0 = Vector256.Load(q);
                    var v1 = Vector256.Load(q + 64);
                    var v2 = Vector256.Load(q + 128);
                    var v3 = Vector256.Load(q + 192);
                    var v4 = Vector256.Load(q + 256);
                    var v5 = Vector256.Load(q + 320);
                    var v6 = Vector256.Load(q + 384);
                    var v7 = Vector256.Load(q + 448);
                    var dw = WeightScales(w + 16 * half, signAndMagnitude);
                    var o = b * ActivationBlockBytes + 2;
                    var so = sidecarOffset + b * SidecarBlockBytes;
                    c0 = Token<TDot>(s0 + o, s0 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c0);
                    c1 = Token<TDot>(s1 + o, s1 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c1);
                    c2 = Token<TDot>(s2 + o, s2 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c2);
                    c3 = Token<TDot>(s3 + o, s3 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c3);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>
    /// GEMM tile, AVX-VNNI on AVX-512 machines: four tokens × all 16 rows per block. The 16 quant vectors stay in
    /// registers for the four tokens, each token's eight activation broadcasts serve both halves, and the float step
    /// runs once on 512 bits; the same arithmetic per lane as MatVec.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void GemmTilesAvx512(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var q = w + 2 * TileRows;
                var v0 = Vector256.Load(q);
                var v1 = Vector256.Load(q + 64);
                var v2 = Vector256.Load(q + 128);
                var v3 = Vector256.Load(q + 192);
                var v4 = Vector256.Load(q + 256);
                var v5 = Vector256.Load(q + 320);
                var v6 = Vector256.Load(q + 384);
                var v7 = Vector256.Load(q + 448);
                var u0 = Vector256.Load(q + 32);
                var u1 = Vector256.Load(q + 96);
                var u2 = Vector256.Load(q + 160);
                var u3 = Vector256.Load(q + 224);
                var u4 = Vector256.Load(q + 288);
                var u5 = Vector256.Load(q + 352);
                var u6 = Vector256.Load(q + 416);
                var u7 = Vector256.Load(q + 480);
                var dw = WeightScales512(w);
                var o = b * ActivationBlockBytes + 2;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token512(s0 + o, s0 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c0);
                c1 = Token512(s1 + o, s1 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c1);
                c2 = Token512(s2 + o, s2 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c2);
                c3 = Token512(s3 + o, s3 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>
    /// GEMM tile, AVX-512 BW sign transfer: four tokens × all 16 rows per block, group by group; each group's |q|
    /// and sign mask are computed once for the four tokens. Per token the sums and float step are MatVec's.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void GemmTilesAvx512Sign(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var q = w + 2 * TileRows;
                var o = b * ActivationBlockBytes + 2;
                Vector512<int> e0 = default, e1 = default, e2 = default, e3 = default;
                Vector512<int> d0 = default, d1 = default, d2 = default, d3 = default;
                for (var j = 0; j < 8; j += 2)
                {
                    var even = Vector512.Load((sbyte*)(q + 64 * j));
                    var odd = Vector512.Load((sbyte*)(q + 64 * j + 64));
                    var evenMagnitudes = Avx512BW.Abs(even);
                    var oddMagnitudes = Avx512BW.Abs(odd);
                    var evenNegative = Vector512.LessThan(even, Vector512<sbyte>.Zero);
                    var oddNegative = Vector512.LessThan(odd, Vector512<sbyte>.Zero);
                    var k = o + 4 * j;
                    e0 += SignGroup512(evenMagnitudes, evenNegative, s0 + k);
                    d0 += SignGroup512(oddMagnitudes, oddNegative, s0 + k + 4);
                    e1 += SignGroup512(evenMagnitudes, evenNegative, s1 + k);
                    d1 += SignGroup512(oddMagnitudes, oddNegative, s1 + k + 4);
                    e2 += SignGroup512(evenMagnitudes, evenNegative, s2 + k);
                    d2 += SignGroup512(oddMagnitudes, oddNegative, s2 + k + 4);
                    e3 += SignGroup512(evenMagnitudes, evenNegative, s3 + k);
                    d3 += SignGroup512(oddMagnitudes, oddNegative, s3 + k + 4);
                }
                var dw = WeightScales512(w);
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 += Vector512.ConvertToSingle(e0 + d0) * (dw * Vector512.Create(*(float*)(s0 + so + 4)));
                c1 += Vector512.ConvertToSingle(e1 + d1) * (dw * Vector512.Create(*(float*)(s1 + so + 4)));
                c2 += Vector512.ConvertToSingle(e2 + d2) * (dw * Vector512.Create(*(float*)(s2 + so + 4)));
                c3 += Vector512.ConvertToSingle(e3 + d3) * (dw * Vector512.Create(*(float*)(s3 + so + 4)));
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>acc + sumᵢ·(d_w·d_a) for one token and the 16 rows of one block (v: rows 0-7, u: rows 8-15), AVX-VNNI.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token512(byte* a, byte* sidecar,
        Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2, Vector256<byte> v3, Vector256<byte> v4, Vector256<byte> v5, Vector256<byte> v6, Vector256<byte> v7,
        Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3, Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7,
        Vector512<float> dw, Vector512<float> acc)
    {
        var seed = Vector256.Create(*(int*)sidecar);
        var a0 = Broadcast(a);
        var a1 = Broadcast(a + 4);
        var a2 = Broadcast(a + 8);
        var a3 = Broadcast(a + 12);
        var a4 = Broadcast(a + 16);
        var a5 = Broadcast(a + 20);
        var a6 = Broadcast(a + 24);
        var a7 = Broadcast(a + 28);
        var low = Dot8(seed, v0, v1, v2, v3, v4, v5, v6, v7, a0, a1, a2, a3, a4, a5, a6, a7);
        var high = Dot8(seed, u0, u1, u2, u3, u4, u5, u6, u7, a0, a1, a2, a3, a4, a5, a6, a7);
        return acc + Vector512.ConvertToSingle(VectorJoin.Join(low, high)) * (dw * Vector512.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>16 rows' d_w·2⁻¹¹² (exact: the f16 bit pattern moved into an f32; the sidecar's d_a carries the 2¹¹²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WeightScales512(byte* scales) =>
        (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)scales)), 13) & Vector512.Create(unchecked((int)0x8FFF_FFFF))).AsSingle();

    /// <summary>Eight rows' d_w·2⁻¹¹² (exact: the f16 bit pattern moved into an f32; the sidecar's d_a carries the 2¹¹²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WeightScales(byte* scales, Vector256<int> signAndMagnitude) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)scales), 13) & signAndMagnitude).AsSingle();

    /// <summary>acc + sumᵢ·(d_w·d_a) for one token: eight rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Token<TDot>(byte* a, byte* sidecar, Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2, Vector256<byte> v3,
        Vector256<byte> v4, Vector256<byte> v5, Vector256<byte> v6, Vector256<byte> v7, Vector256<float> dw, Vector256<float> acc)
        where TDot : struct, IGroupDot
    {
        var sums = TDot.Dot8(Vector256.Create(*(int*)sidecar), v0, v1, v2, v3, v4, v5, v6, v7,
            Broadcast(a), Broadcast(a + 4), Broadcast(a + 8), Broadcast(a + 12),
            Broadcast(a + 16), Broadcast(a + 20), Broadcast(a + 24), Broadcast(a + 28));
        return acc + Vector256.ConvertToSingle(sums) * (dw * Vector256.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>One GGUF-layout row (after the last whole tile), with the same exact arithmetic per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowDot<TDot>(byte* row, byte* state, byte* sidecar, int blocks) where TDot : struct, IGroupDot
    {
        var sum = 0f;
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var activation = state + b * ActivationBlockBytes;
            var sumi = TDot.RowSum(Vector256.Load(block + 2), Vector256.Load((sbyte*)(activation + 2))) + *(int*)(sidecar + b * SidecarBlockBytes);
            sum += sumi * (HalfLookup.ToSingle(block) * HalfLookup.ToSingle(activation));
        }
        return sum;
    }

    /// <summary>The 256-bit integer step of a path: a tile half's eight groups, and one GGUF block of a tail row.</summary>
    private interface IGroupDot
    {
        /// <summary>seed + Σ over eight 4-quant groups of quant·activation per int32 lane (quants as the tiles store them).</summary>
        static abstract Vector256<int> Dot8(Vector256<int> seed,
            Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
            Vector256<byte> w4, Vector256<byte> w5, Vector256<byte> w6, Vector256<byte> w7,
            Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
            Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7);

        /// <summary>Σ q·a over one GGUF block's 32 signed quants, minus what the sidecar seed adds back.</summary>
        static abstract int RowSum(Vector256<byte> quants, Vector256<sbyte> activations);
    }

    /// <summary>vpdpbusd on quants stored as q + 128.</summary>
    private struct VnniDot : IGroupDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot8(Vector256<int> seed,
            Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
            Vector256<byte> w4, Vector256<byte> w5, Vector256<byte> w6, Vector256<byte> w7,
            Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
            Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7) =>
            InterleavedSteps.Dot8(seed, w0, w1, w2, w3, w4, w5, w6, w7, a0, a1, a2, a3, a4, a5, a6, a7);

        /// <summary>Σ(q + 128)·a; the sidecar seed −128·Σa makes it Σq·a.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int RowSum(Vector256<byte> quants, Vector256<sbyte> activations) =>
            Vector256.Sum(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, quants ^ Vector256.Create((byte)0x80), activations));
    }

    /// <summary>vpmaddubsw of |q| and the activation with q's sign (vpsignb), then vpmaddwd by one, on signed quants.</summary>
    private struct SignDot : IGroupDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot8(Vector256<int> seed,
            Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
            Vector256<byte> w4, Vector256<byte> w5, Vector256<byte> w6, Vector256<byte> w7,
            Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
            Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7)
        {
            var even = seed + Group(w0, a0);
            var odd = Group(w1, a1);
            even += Group(w2, a2);
            odd += Group(w3, a3);
            even += Group(w4, a4);
            odd += Group(w5, a5);
            even += Group(w6, a6);
            odd += Group(w7, a7);
            return even + odd;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int RowSum(Vector256<byte> quants, Vector256<sbyte> activations) => Vector256.Sum(Group(quants, activations));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> Group(Vector256<byte> quants, Vector256<sbyte> activations)
        {
            var q = quants.AsSByte();
            return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(q), Avx2.Sign(activations, q)), Vector256<short>.One);
        }
    }
}
