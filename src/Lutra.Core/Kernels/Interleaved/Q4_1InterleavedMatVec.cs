using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q4_1 weights · Q8_1 activations over 16-row interleaved tiles (see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile block (320 bytes = five cache lines, 16 GGUF blocks' worth): the 16 rows' f16 scales d, the 16 rows' f16
/// minimums m, then four 64-byte groups laid out as Q4_0's (<see cref="Q4_0InterleavedMatVec"/>): group j holds, in
/// int32 lane r, quant bytes 4j..4j+3 of row r (low nibbles elements 4j..4j+3, high nibbles 16+4j..16+4j+3). Q4_1's
/// nibbles are unsigned with no offset, so the integer sums need no seed; the minimum enters as m_w·s_a, where the
/// activation block's s_a = d_a·Σa is stored by the Q8_1 format itself.
/// </para>
/// <para>
/// The integer arithmetic is Q4_0's vpmaddubsw kernel (pairs summed in int16: |Σ| ≤ 8·2·15·127 &lt; 2¹⁵, one
/// vpmaddwd to int32): one 512-bit vector per group on AVX-512 (high nibbles by GFNI where present), two 256-bit
/// halves of eight rows on AVX2.
/// </para>
/// <para>
/// Exact: per row the float arithmetic is the reference's, (d_w·d_a)·sumᵢ + m_w·s_a added in block order, so every
/// output equals <see cref="QuantReference.Dot"/> bit for bit, alone or in a batch. Rows after the last whole tile
/// keep the GGUF layout and run through an exact per-row loop.
/// </para>
/// </summary>
public sealed unsafe class Q4_1InterleavedMatVec(InstructionSet isa, bool gfni)
    : MatVecKernel(GgmlType.Q4_1, isa, isa < InstructionSet.Avx512 ? "AVX2 maddubs 16-row interleaved"
        : gfni ? "AVX-512 BW+GFNI 16-row interleaved" : "AVX-512 BW 16-row interleaved")
{
    private const int BlockBytes = 20;
    private const int TileBlockBytes = TileRows * BlockBytes;

    /// <summary>Bytes of one Q8_1 activation block (f16 d, f16 s, 32 int8).</summary>
    private const int Q8_1BlockBytes = 36;

    /// <summary>Where a tile block's quant groups start: after the 16 scales and 16 minimums.</summary>
    private const int QuantsOffset = 4 * TileRows;

    /// <summary>The AVX-512 path needs AVX-512 BW; the AVX2 path AVX2.</summary>
    public static bool IsSupported(InstructionSet isa) =>
        isa >= InstructionSet.Avx512 ? KernelIsa.IsSupported(InstructionSet.Avx512) : isa == InstructionSet.Avx2 && KernelIsa.IsSupported(isa);

    /// <summary>On the AVX-512 path, GFNI extracts the high nibbles where the CPU has it.</summary>
    public Q4_1InterleavedMatVec(InstructionSet isa) : this(isa, Gfni.V512.IsSupported)
    {
    }

    /// <summary>
    /// The AVX-512 path's high nibbles: one vgf2p8affineqb per quant vector when true (in L2, 2048 columns: 93-96 against 83 GB/s
    /// for the shift and mask on this Zen 4), else vpsrlw + vpand (CPUs without GFNI).
    /// </summary>
    private readonly bool _gfni = gfni;

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    /// <summary>
    /// The Q8_1 row (bit-identical to the reference), then per block d_a·2¹¹² and s_a·2¹¹² as f32: the weight side
    /// converts its f16 d and m to d·2⁻¹¹² and m·2⁻¹¹² (<see cref="ScaledDown"/>), and the products (d_w·2⁻¹¹²)·(d_a·2¹¹²)
    /// and (m_w·2⁻¹¹²)·(s_a·2¹¹²) are the same real numbers as the reference's d_w·d_a and m_w·s_a, so they round to the
    /// same f32. Every factor is exact and finite (an f16 below 2¹⁶ times 2¹¹² stays below f32's 2¹²⁸; an f16 times
    /// 2⁻¹¹² is at least 2⁻¹³⁶, an f32 subnormal with room for its 11 bits), and two multiplies per block go.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => PrepareScaledActivations(x, n, state, StandardActivationBytes(n));

    /// <summary><see cref="PrepareActivations"/> for a Q8_1 row of <paramref name="standardBytes"/> (shared with Q5_1's tiles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PrepareScaledActivations(float* x, int n, byte* state, int standardBytes)
    {
        Q8_1Kernels.QuantizeRowVector128(x, state, n);
        var sidecar = state + SidecarOffset(standardBytes);
        for (var b = 0; b < n / Block; b++)
        {
            var block = state + b * Q8_1BlockBytes;
            *(float*)(sidecar + b * SidecarBlockBytes) = HalfLookup.ToSingle(block) * TwoTo112;
            *(float*)(sidecar + b * SidecarBlockBytes + 4) = HalfLookup.ToSingle(block + 2) * TwoTo112;
        }
    }

    /// <summary>
    /// Whole tiles into the tile layout, the rows past the last whole tile copied unchanged. False, writing nothing,
    /// when the shape does not fit Q4_1 or a tile row has a non-finite d or m.
    /// </summary>
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, highBits: false);

    /// <summary>
    /// The tile layout of Q4_1, or of Q5_1 with <paramref name="highBits"/> (its 32-bit qh, after d and m in both
    /// layouts, as one 64-byte group before the quant groups): 16 d, 16 m, [qh,] the four quant groups.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool TryRepackTiles(byte* source, long rowBytes, int rows, int n, byte* destination, int blockBytes, bool highBits)
    {
        if (n <= 0 || n % Block != 0 || rowBytes != (long)n / Block * blockBytes)
            return false;
        var blocks = n / Block;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        var tileBlockBytes = TileRows * blockBytes;
        var quantsFrom = highBits ? 8 : 4;
        var quantsTo = QuantsOffset + (highBits ? 4 * TileRows : 0);
        if (!FiniteScales(source, rowBytes, tiles * TileRows, blocks, blockBytes) || !FiniteScales(source + 2, rowBytes, tiles * TileRows, blocks, blockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * blockBytes;
                    var tileBlock = dst + b * tileBlockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)block;
                    ((ushort*)tileBlock)[TileRows + r] = *(ushort*)(block + 2);
                    if (highBits)
                        *(uint*)(tileBlock + QuantsOffset + QuantPosition(r, 0)) = *(uint*)(block + 4);
                    for (var j = 0; j < 4; j++)
                        *(uint*)(tileBlock + quantsTo + QuantPosition(r, j)) = *(uint*)(block + quantsFrom + 4 * j);
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = state + SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        if (Isa >= InstructionSet.Avx512 && _gfni)
            TilesAvx512<GfniHighNibbles>(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else if (Isa >= InstructionSet.Avx512)
            TilesAvx512<ShiftHighNibbles>(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else
            TilesAvx2(weights, rowBytes, tiles, state, sidecar, blocks, y);
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = RowDot(weights + r * rowBytes, state, blocks);
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
            if (Isa >= InstructionSet.Avx512 && _gfni)
                TilesAvx512<GfniHighNibbles>(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else if (Isa >= InstructionSet.Avx512)
                TilesAvx512<ShiftHighNibbles>(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else
                TilesAvx2(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            for (var r = tiles * TileRows; r < rows; r++)
            {
                for (var k = 0; k < 4; k++)
                {
                    var state = s0 + (long)k * stateStride;
                    y[(t + k) * yStride + r] = RowDot(weights + r * rowBytes, state, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>Whole tiles, one token, AVX-512: all 16 rows of a block in one vector.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512<THigh>(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
        where THigh : struct, IHighNibbles
    {
        var mask = Vector512.Create((byte)0x0F);
        var high = THigh.Constant;
        var signAndMagnitude = Vector512.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 4;
            var s = sidecar;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += Q8_1BlockBytes, s += SidecarBlockBytes)
            {
                // Five lines ahead, as for Q4_0's 288-byte block: here they cover the 320-byte block exactly.
                PrefetchFiveLineTileBlock(w);
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles<THigh>(w + QuantsOffset, mask, high);
                acc = Token(a, s, l0, l1, l2, l3, h0, h1, h2, h3, ScaledDown(w, signAndMagnitude), ScaledDown(w + 2 * TileRows, signAndMagnitude), acc);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>GEMM tile, AVX-512: four tokens × 16 rows; a block's nibbles and scales are unpacked once for the four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512<THigh>(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
        where THigh : struct, IHighNibbles
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        var mask = Vector512.Create((byte)0x0F);
        var high = THigh.Constant;
        var signAndMagnitude = Vector512.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles<THigh>(w + QuantsOffset, mask, high);
                var dw = ScaledDown(w, signAndMagnitude);
                var mw = ScaledDown(w + 2 * TileRows, signAndMagnitude);
                var o = b * Q8_1BlockBytes + 4;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c0);
                c1 = Token(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c1);
                c2 = Token(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c2);
                c3 = Token(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c3);
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
        Nibbles<THigh>(byte* quants, Vector512<byte> mask, Vector512<byte> high) where THigh : struct, IHighNibbles
    {
        var v0 = Vector512.Load(quants);
        var v1 = Vector512.Load(quants + 64);
        var v2 = Vector512.Load(quants + 128);
        var v3 = Vector512.Load(quants + 192);
        return (v0 & mask, v1 & mask, v2 & mask, v3 & mask, THigh.Extract(v0, high), THigh.Extract(v1, high), THigh.Extract(v2, high), THigh.Extract(v3, high));
    }

    /// <summary>How the AVX-512 path moves every byte's high nibble to its low bits (zeroing the rest).</summary>
    private interface IHighNibbles
    {
        /// <summary>The constant <see cref="Extract"/> takes, created once outside the block loop.</summary>
        static abstract Vector512<byte> Constant { get; }

        static abstract Vector512<byte> Extract(Vector512<byte> v, Vector512<byte> constant);
    }

    /// <summary>vpsrlw by 4, then the nibble mask.</summary>
    private readonly struct ShiftHighNibbles : IHighNibbles
    {
        public static Vector512<byte> Constant => Vector512.Create((byte)0x0F);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Extract(Vector512<byte> v, Vector512<byte> constant) =>
            Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & constant;
    }

    /// <summary>One affine transform whose matrix maps bits 4-7 to bits 0-3.</summary>
    private readonly struct GfniHighNibbles : IHighNibbles
    {
        public static Vector512<byte> Constant => Vector512.Create(0x1020_4080_0000_0000ul).AsByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Extract(Vector512<byte> v, Vector512<byte> constant) => Gfni.V512.GaloisFieldAffineTransform(v, constant, 0);
    }

    /// <summary>
    /// 16 rows' f16 values v as the f32 v·2⁻¹¹², exactly: <see cref="InterleavedSteps.HalfToSingle512"/> without its final
    /// multiply, which the activation sidecar carries instead (see <see cref="PrepareActivations"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ScaledDown(byte* halves, Vector512<int> signAndMagnitude) =>
        (Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)halves)), 13) & signAndMagnitude).AsSingle();

    /// <summary>acc + ((d_w·d_a)·sumᵢ + m_w·s_a) for one token and the 16 rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token(byte* a, byte* sidecar, Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, Vector512<float> dw, Vector512<float> mw, Vector512<float> acc)
    {
        var p0 = Avx512BW.MultiplyAddAdjacent(l0, Broadcast512(a)) + Avx512BW.MultiplyAddAdjacent(h0, Broadcast512(a + 16));
        var p1 = Avx512BW.MultiplyAddAdjacent(l1, Broadcast512(a + 4)) + Avx512BW.MultiplyAddAdjacent(h1, Broadcast512(a + 20));
        var p2 = Avx512BW.MultiplyAddAdjacent(l2, Broadcast512(a + 8)) + Avx512BW.MultiplyAddAdjacent(h2, Broadcast512(a + 24));
        var p3 = Avx512BW.MultiplyAddAdjacent(l3, Broadcast512(a + 12)) + Avx512BW.MultiplyAddAdjacent(h3, Broadcast512(a + 28));
        var sums = Avx512BW.MultiplyAddAdjacent(p0 + p1 + (p2 + p3), Vector512<short>.One);
        return acc + (dw * Vector512.Create(*(float*)sidecar) * Vector512.ConvertToSingle(sums) + mw * Vector512.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>Whole tiles, one token, AVX2: the AVX-512 path's arithmetic on two halves of eight rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 4;
            var s = sidecar;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += Q8_1BlockBytes, s += SidecarBlockBytes)
            {
                PrefetchFiveLineTileBlock(w);
                var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + QuantsOffset);
                low = Token256(a, s, l0, l1, l2, l3, h0, h1, h2, h3, ScaledDown256(w), ScaledDown256(w + 2 * TileRows), low);
                (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + QuantsOffset + 32);
                high = Token256(a, s, l0, l1, l2, l3, h0, h1, h2, h3, ScaledDown256(w + TileRows), ScaledDown256(w + 3 * TileRows), high);
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>GEMM tile, AVX2: four tokens × eight rows per pass.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
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
                    var (l0, l1, l2, l3, h0, h1, h2, h3) = Nibbles256(w + QuantsOffset + 32 * half);
                    var dw = ScaledDown256(w + 16 * half);
                    var mw = ScaledDown256(w + 2 * TileRows + 16 * half);
                    var o = b * Q8_1BlockBytes + 4;
                    var so = sidecarOffset + b * SidecarBlockBytes;
                    c0 = Token256(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c0);
                    c1 = Token256(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c1);
                    c2 = Token256(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c2);
                    c3 = Token256(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c3);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>Eight rows' f16 values v as the f32 v·2⁻¹¹², exactly (as <see cref="ScaledDown"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScaledDown256(byte* halves) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)halves), 13) & Vector256.Create(unchecked((int)0x8FFF_FFFF))).AsSingle();

    /// <summary>acc + ((d_w·d_a)·sumᵢ + m_w·s_a) for one token and eight rows, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Token256(byte* a, byte* sidecar, Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
        Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, Vector256<float> dw, Vector256<float> mw, Vector256<float> acc)
    {
        var p0 = Avx2.MultiplyAddAdjacent(l0, Broadcast(a)) + Avx2.MultiplyAddAdjacent(h0, Broadcast(a + 16));
        var p1 = Avx2.MultiplyAddAdjacent(l1, Broadcast(a + 4)) + Avx2.MultiplyAddAdjacent(h1, Broadcast(a + 20));
        var p2 = Avx2.MultiplyAddAdjacent(l2, Broadcast(a + 8)) + Avx2.MultiplyAddAdjacent(h2, Broadcast(a + 24));
        var p3 = Avx2.MultiplyAddAdjacent(l3, Broadcast(a + 12)) + Avx2.MultiplyAddAdjacent(h3, Broadcast(a + 28));
        var sums = Avx2.MultiplyAddAdjacent(p0 + p1 + (p2 + p3), Vector256<short>.One);
        return acc + (dw * Vector256.Create(*(float*)sidecar) * Vector256.ConvertToSingle(sums) + mw * Vector256.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>One GGUF-layout row (after the last whole tile), with the same exact arithmetic per block (AVX2 only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowDot(byte* row, byte* state, int blocks)
    {
        var mask = Vector128.Create((byte)0x0F);
        var sum = 0f;
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var nibbles = Vector128.Load(block + 4);
            var quants = VectorJoin.Join(nibbles & mask, Vector128.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & mask);
            var a = Vector256.Load((sbyte*)(state + b * Q8_1BlockBytes + 4));
            var sumi = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(quants, a), Vector256<short>.One));
            var activation = state + b * Q8_1BlockBytes;
            sum += HalfLookup.ToSingle(block) * HalfLookup.ToSingle(activation) * sumi + HalfLookup.ToSingle(block + 2) * HalfLookup.ToSingle(activation + 2);
        }
        return sum;
    }
}
