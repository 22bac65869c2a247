using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q4_0 weights · Q8_0 activations over 16-row interleaved tiles (see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile block (288 bytes, 16 GGUF blocks' worth): the 16 rows' f16 scales, then four 64-byte groups; group j
/// holds, in int32 lane r, quant bytes 4j..4j+3 of row r, whose low nibbles are elements 4j..4j+3 and whose high
/// nibbles are elements 16+4j..16+4j+3. The nibbles are used unsigned and the −8 offset enters as the seed −8·Σa
/// of each block's integer sums (from the activation sidecar).
/// </para>
/// <para>
/// Two instruction paths over the same layout. AVX-512: one 512-bit vector holds a group for all 16 rows;
/// vpmaddubsw pairs, the eight pair vectors of a block summed in int16 (|Σ| ≤ 8·2·15·128 &lt; 2¹⁵), one vpmaddwd
/// to int32. That beats AVX-VNNI's 256-bit vpdpbusd on this Zen 5 (measured in cache: 86 vs 57 GB/s; .NET has no
/// 512-bit VNNI), and needs no VNNI. AVX2: two 256-bit halves of eight rows, with vpdpbusd where AVX-VNNI exists,
/// else with the AVX-512 path's vpmaddubsw arithmetic (measured here, forced: both ~1.8× the AVX2 row kernel).
/// </para>
/// <para>
/// Exact: per row the float arithmetic is the reference's, (sumᵢ·d_w)·d_a added in block order, so every
/// output equals <see cref="QuantReference.Dot"/> bit for bit, alone or in a batch. Rows after the last whole
/// tile keep the GGUF layout and run through an exact per-row loop.
/// </para>
/// </summary>
public sealed unsafe class Q4_0InterleavedMatVec(InstructionSet isa, bool avxVnni)
    : MatVecKernel(GgmlType.Q4_0, isa, isa >= InstructionSet.Avx512 ? "AVX-512 BW 16-row interleaved"
        : avxVnni ? "AVX-VNNI 16-row interleaved" : "AVX2 maddubs 16-row interleaved")
{
    private const int BlockBytes = 18;
    private const int TileBlockBytes = TileRows * BlockBytes;

    /// <summary>On the AVX2 path, AVX-VNNI is used where the CPU has it.</summary>
    public Q4_0InterleavedMatVec(InstructionSet isa) : this(isa, AvxVnni.IsSupported)
    {
    }

    /// <summary>The AVX-512 path needs AVX-512 BW; the AVX2 path AVX2 (AVX-VNNI when <c>avxVnni</c>).</summary>
    public static bool IsSupported(InstructionSet isa) =>
        isa >= InstructionSet.Avx512 ? KernelIsa.IsSupported(InstructionSet.Avx512) : isa == InstructionSet.Avx2 && KernelIsa.IsSupported(isa);

    /// <summary>The AVX2 path: vpdpbusd when true, else vpmaddubsw + vpmaddwd (CPUs without AVX-VNNI).</summary>
    private readonly bool _avxVnni = avxVnni;

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) =>
        InterleavedSteps.PrepareActivations(Isa, x, n, state, StandardActivationBytes(n), -8, 1f);

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, 0u);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = state + SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        if (Isa >= InstructionSet.Avx512)
            TilesAvx512(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else if (_avxVnni)
            TilesAvx2(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else
            TilesAvx2Maddubs(weights, rowBytes, tiles, state, sidecar, blocks, y);
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = RowDot(weights + r * rowBytes, state, sidecar, blocks);
    }

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
                TilesAvx512(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else if (_avxVnni)
                TilesAvx2(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else
                TilesAvx2Maddubs(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            for (var r = tiles * TileRows; r < rows; r++)
            {
                for (var k = 0; k < 4; k++)
                {
                    var state = s0 + (long)k * stateStride;
                    y[(t + k) * yStride + r] = RowDot(weights + r * rowBytes, state, state + sidecarOffset, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>Whole tiles, one token, AVX-512: all 16 rows of a block in one vector.</summary>
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
                PrefetchFiveLineTileBlock(w);
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles(w + 2 * TileRows);
                acc = Token(a, s, l0, l1, l2, l3, h0, h1, h2, h3, WeightScales(w), acc);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>GEMM tile, AVX-512: four tokens × 16 rows; a block's nibbles are unpacked once for the four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
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
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles(w + 2 * TileRows);
                var dw = WeightScales(w);
                var o = b * ActivationBlockBytes + 2;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c0);
                c1 = Token(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c1);
                c2 = Token(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c2);
                c3 = Token(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>A tile block's four quant groups as low nibbles l and high nibbles h, 16 rows each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>)
        Nibbles(byte* quants)
    {
        var mask = Vector512.Create((byte)0x0F);
        var v0 = Vector512.Load(quants);
        var v1 = Vector512.Load(quants + 64);
        var v2 = Vector512.Load(quants + 128);
        var v3 = Vector512.Load(quants + 192);
        return (v0 & mask, v1 & mask, v2 & mask, v3 & mask,
            Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask, Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask,
            Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & mask, Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>The 16 rows' f16 scales as f32 (exact, see <see cref="InterleavedSteps.HalfToSingle"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WeightScales(byte* scales) =>
        (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)scales)), 13) & Vector512.Create(unchecked((int)0x8FFF_FFFF)))
        .AsSingle() * Vector512.Create(TwoTo112);

    /// <summary>acc + (sumᵢ·d_w)·d_a for one token and the 16 rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token(byte* a, byte* sidecar, Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, Vector512<float> dw, Vector512<float> acc)
    {
        var p0 = Avx512BW.MultiplyAddAdjacent(l0, Broadcast512(a)) + Avx512BW.MultiplyAddAdjacent(h0, Broadcast512(a + 16));
        var p1 = Avx512BW.MultiplyAddAdjacent(l1, Broadcast512(a + 4)) + Avx512BW.MultiplyAddAdjacent(h1, Broadcast512(a + 20));
        var p2 = Avx512BW.MultiplyAddAdjacent(l2, Broadcast512(a + 8)) + Avx512BW.MultiplyAddAdjacent(h2, Broadcast512(a + 24));
        var p3 = Avx512BW.MultiplyAddAdjacent(l3, Broadcast512(a + 12)) + Avx512BW.MultiplyAddAdjacent(h3, Broadcast512(a + 28));
        var sums = Avx512BW.MultiplyAddAdjacent(p0 + p1 + (p2 + p3), Vector512<short>.One) + Vector512.Create(*(int*)sidecar);
        return acc + Vector512.ConvertToSingle(sums) * dw * Vector512.Create(*(float*)(sidecar + 4));
    }

    /// <summary>Whole tiles, one token, 256-bit only (AVX2 + AVX-VNNI): two halves of eight rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        var mask = Vector256.Create((byte)0x0F);
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var twoTo112 = Vector256.Create(TwoTo112);
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchFiveLineTileBlock(w);
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
                var lowSums = HalfTileSums(w + 2 * TileRows, seed, a0, a1, a2, a3, a4, a5, a6, a7, mask);
                var highSums = HalfTileSums(w + 2 * TileRows + 32, seed, a0, a1, a2, a3, a4, a5, a6, a7, mask);
                low += Vector256.ConvertToSingle(lowSums) * HalfToSingle(w, signAndMagnitude, twoTo112) * da;
                high += Vector256.ConvertToSingle(highSums) * HalfToSingle(w + TileRows, signAndMagnitude, twoTo112) * da;
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>
    /// Eight rows' integer sums Σ(q − 8)·a of one block. The high nibbles are used in place (q·16, masked, no
    /// shift), their chain is divided by 16 once at the end: exact, since every term is a multiple of 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> HalfTileSums(byte* quants, Vector256<int> seed,
        Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
        Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7, Vector256<byte> mask)
    {
        var v0 = Vector256.Load(quants);
        var v1 = Vector256.Load(quants + 64);
        var v2 = Vector256.Load(quants + 128);
        var v3 = Vector256.Load(quants + 192);
        var low = AvxVnni.MultiplyWideningAndAdd(seed, v0 & mask, a0);
        var high = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.AndNot(mask, v0), a4);
        low = AvxVnni.MultiplyWideningAndAdd(low, v1 & mask, a1);
        high = AvxVnni.MultiplyWideningAndAdd(high, Avx2.AndNot(mask, v1), a5);
        low = AvxVnni.MultiplyWideningAndAdd(low, v2 & mask, a2);
        high = AvxVnni.MultiplyWideningAndAdd(high, Avx2.AndNot(mask, v2), a6);
        low = AvxVnni.MultiplyWideningAndAdd(low, v3 & mask, a3);
        high = AvxVnni.MultiplyWideningAndAdd(high, Avx2.AndNot(mask, v3), a7);
        return low + Vector256.ShiftRightArithmetic(high, 4);
    }

    /// <summary>GEMM tile, 256-bit: four tokens × eight rows per pass; each half tile's nibbles are unpacked once per block for four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var mask = Vector256.Create((byte)0x0F);
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var twoTo112 = Vector256.Create(TwoTo112);
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
                    var l0 = v0 & mask;
                    var l1 = v1 & mask;
                    var l2 = v2 & mask;
                    var l3 = v3 & mask;
                    var h0 = Vector256.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask;
                    var h1 = Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask;
                    var h2 = Vector256.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & mask;
                    var h3 = Vector256.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & mask;
                    var dw = HalfToSingle(w + 16 * half, signAndMagnitude, twoTo112);
                    var o = b * ActivationBlockBytes + 2;
                    var so = sidecarOffset + b * SidecarBlockBytes;
                    c0 = Token(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c0);
                    c1 = Token(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c1);
                    c2 = Token(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c2);
                    c3 = Token(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c3);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>acc + (sumᵢ·d_w)·d_a for one token: eight rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Token(byte* a, byte* sidecar, Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
        Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, Vector256<float> dw, Vector256<float> acc)
    {
        var sums = Dot8(Vector256.Create(*(int*)sidecar), l0, l1, l2, l3, h0, h1, h2, h3,
            Broadcast(a), Broadcast(a + 4), Broadcast(a + 8), Broadcast(a + 12),
            Broadcast(a + 16), Broadcast(a + 20), Broadcast(a + 24), Broadcast(a + 28));
        return acc + Vector256.ConvertToSingle(sums) * dw * Vector256.Create(*(float*)(sidecar + 4));
    }

    /// <summary>Whole tiles, one token, AVX2 without VNNI: the AVX-512 path's arithmetic on two halves of eight rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2Maddubs(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchFiveLineTileBlock(w);
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + 2 * TileRows);
                low = TokenMaddubs(a, s, l0, l1, l2, l3, h0, h1, h2, h3, WeightScales256(w), low);
                (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + 2 * TileRows + 32);
                high = TokenMaddubs(a, s, l0, l1, l2, l3, h0, h1, h2, h3, WeightScales256(w + TileRows), high);
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>GEMM tile, AVX2 without VNNI: four tokens × eight rows per pass.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2Maddubs(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
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
                    var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + 2 * TileRows + 32 * half);
                    var dw = WeightScales256(w + 16 * half);
                    var o = b * ActivationBlockBytes + 2;
                    var so = sidecarOffset + b * SidecarBlockBytes;
                    c0 = TokenMaddubs(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c0);
                    c1 = TokenMaddubs(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c1);
                    c2 = TokenMaddubs(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c2);
                    c3 = TokenMaddubs(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, c3);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>Eight rows' f16 scales as f32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WeightScales256(byte* scales) =>
        HalfToSingle(scales, Vector256.Create(unchecked((int)0x8FFF_FFFF)), Vector256.Create(TwoTo112));

    /// <summary>acc + (sumᵢ·d_w)·d_a for one token and eight rows, via vpmaddubsw pairs summed in int16 (as on AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TokenMaddubs(byte* a, byte* sidecar, Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
        Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, Vector256<float> dw, Vector256<float> acc)
    {
        var p0 = Avx2.MultiplyAddAdjacent(l0, Broadcast(a)) + Avx2.MultiplyAddAdjacent(h0, Broadcast(a + 16));
        var p1 = Avx2.MultiplyAddAdjacent(l1, Broadcast(a + 4)) + Avx2.MultiplyAddAdjacent(h1, Broadcast(a + 20));
        var p2 = Avx2.MultiplyAddAdjacent(l2, Broadcast(a + 8)) + Avx2.MultiplyAddAdjacent(h2, Broadcast(a + 24));
        var p3 = Avx2.MultiplyAddAdjacent(l3, Broadcast(a + 12)) + Avx2.MultiplyAddAdjacent(h3, Broadcast(a + 28));
        var sums = Avx2.MultiplyAddAdjacent(p0 + p1 + (p2 + p3), Vector256<short>.One) + Vector256.Create(*(int*)sidecar);
        return acc + Vector256.ConvertToSingle(sums) * dw * Vector256.Create(*(float*)(sidecar + 4));
    }

    /// <summary>One GGUF-layout row (after the last whole tile), with the same exact arithmetic per block (AVX2 only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowDot(byte* row, byte* state, byte* sidecar, int blocks)
    {
        var mask = Vector128.Create((byte)0x0F);
        var sum = 0f;
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var nibbles = Vector128.Load(block + 2);
            var quants = VectorJoin.Join(nibbles & mask, Vector128.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & mask);
            var a = Vector256.Load((sbyte*)(state + b * ActivationBlockBytes + 2));
            var sumi = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(quants, a), Vector256<short>.One))
                + *(int*)(sidecar + b * SidecarBlockBytes);
            sum += sumi * HalfLookup.ToSingle(block) * *(float*)(sidecar + b * SidecarBlockBytes + 4);
        }
        return sum;
    }
}
