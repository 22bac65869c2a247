using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// TQ2_0 weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW, or AVX2 on two halves of eight rows;
/// see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile (16 rows·rowBytes, the GGUF size): first the 16 rows' f16 d of every super-block, 32 bytes each, then the
/// quants of every super-block, 1024 bytes each as 16 groups of 64 bytes (group j holds qs bytes 4j..4j+3 of row r
/// in int32 lane r). Keeping the scales apart keeps each 64-byte quant load on one cache line (a super-block of 16
/// rows is 1056 bytes, not a multiple of 64) when the super-block count is even; putting them at the head of the
/// tile puts them in the path of the quant stream's software prefetch, issued while the previous tile runs. A qs
/// byte m of half h holds the 2-bit codes of elements 128h + 32p + m for p = 0..3, so plane p of a group,
/// (v &gt;&gt; 2p) &amp; 3, is 16 codes of every row against four consecutive activations broadcast to every lane.
/// The AVX2 path reads the same tiles: the low and high 32 bytes of a group are rows 0-7 and 8-15, so one repack
/// serves both instruction sets.
/// </para>
/// <para>
/// Codes c ∈ {0, 1, 2} enter vpmaddubsw unsigned; every pair is in [−512, 508] and each int16 slot of a lane
/// collects 128 products c·a ∈ [−256, 254], so the whole super-block sums in int16 without overflow, then one
/// vpmaddwd gives each row's Σ c·a in its int32 lane. The −1 offset is −Σa per super-block, from a sidecar written
/// with the activations. Exact: the integer sums are the reference's and the float arithmetic per super-block is
/// the reference's, sumi·(d·d_a) added in order, so every output equals <see cref="QuantReference.Dot"/> bit for
/// bit. Matrices with the code 3 (value +2, which the quantizer never writes) or a non-finite d in a tile row are
/// refused; rows after the last whole tile keep the GGUF layout and run through an exact row dot.
/// </para>
/// </summary>
public sealed unsafe class TQ2_0InterleavedMatVec(InstructionSet isa, bool gfni)
    : MatVecKernel(GgmlType.TQ2_0, isa, isa >= InstructionSet.Avx512 ? "AVX-512 BW 16-row interleaved"
        : gfni ? "AVX2+GFNI 16-row interleaved" : "AVX2 16-row interleaved")
{
    /// <summary>The AVX-512 kernel.</summary>
    public TQ2_0InterleavedMatVec() : this(InstructionSet.Avx512)
    {
    }

    /// <summary>The kernel at <paramref name="isa"/>; its 2-bit planes come from GFNI where the CPU has it.</summary>
    public TQ2_0InterleavedMatVec(InstructionSet isa) : this(isa, isa >= InstructionSet.Avx512 ? Gfni.V512.IsSupported : Gfni.V256.IsSupported)
    {
    }

    /// <summary>
    /// The AVX2 path's planes 1-3: one VEX vgf2p8affineqb each when true, else vpsrlw + vpand (AVX2 CPUs without
    /// GFNI). The AVX-512 path asks <see cref="Gfni.V512"/> itself.
    /// </summary>
    private readonly bool _gfni = gfni;

    private const int SuperBlock = 256;
    private const int BlockBytes = 66;
    private const int QuantBytes = 64;
    private const int TileQuantBytes = TileRows * QuantBytes;
    private const int TileScaleBytes = 2 * TileRows;
    private const int ActivationBlockBytes = 292;
    private const int ActivationQuants = 4;

    /// <summary>
    /// Prefetch distance (into L2, as <see cref="InterleavedSteps.PrefetchDistance"/> says why) over the tile stream (scales and quants). Best of 11 GEMVs over 128 MB at
    /// 2048 columns, four alternating rounds on the shared machine: none 24-26 GB/s, 2 KiB ~34, 4 KiB 33-36,
    /// 8 KiB 39, 16 KiB 31-39.
    /// Each line then goes into L1 2 KiB ahead (<see cref="InterleavedSteps.PrefetchTwoStage"/>).
    /// </summary>
    private const int QuantPrefetchDistance = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    /// <summary>The AVX-512 path needs AVX-512 BW; the AVX2 path AVX2.</summary>
    public static bool IsSupportedAt(InstructionSet isa) =>
        isa >= InstructionSet.Avx512 ? IsSupported : isa == InstructionSet.Avx2 && KernelIsa.IsSupported(isa);

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    /// <summary>The Q8_K row, then per super-block −Σa as int32.</summary>
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(n / SuperBlock * 4);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, Isa);
        var offsets = (int*)(state + AlignUp(StandardActivationBytes(n)));
        var ones = Vector256.Create((byte)1);
        for (var b = 0; b < n / SuperBlock; b++)
        {
            var q = state + b * ActivationBlockBytes + ActivationQuants;
            var pairs = Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)q)) + Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 32)))
                + (Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 64))) + Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 96))))
                + (Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 128))) + Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 160))))
                + (Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 192))) + Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(q + 224))));
            offsets[b] = -Vector256.Sum(Avx2.MultiplyAddAdjacent(pairs, Vector256<short>.One));
        }
    }

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the
    /// shape is not TQ2_0's or a tile row has a non-finite d or a code 3 (outside the int16 budget and not ternary).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * BlockBytes)
            return false;
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!FitsTheLayout(source, tiles * TileRows * rowBytes / BlockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            var scales = dst;
            dst += (long)blocks * TileScaleBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * BlockBytes;
                    ((ushort*)(scales + b * TileScaleBytes))[r] = *(ushort*)(block + QuantBytes);
                    for (var j = 0; j < QuantBytes / 4; j++)
                        *(uint*)(dst + b * TileQuantBytes + QuantPosition(r, j)) = *(uint*)(block + 4 * j);
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    /// <summary>True when none of the <paramref name="count"/> GGUF blocks at <paramref name="blocks"/> has a non-finite d or a 2-bit code 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool FitsTheLayout(byte* blocks, long count)
    {
        for (long i = 0; i < count; i++)
        {
            var block = blocks + i * BlockBytes;
            if ((*(ushort*)(block + QuantBytes) & 0x7C00) == 0x7C00)
                return false;
            for (var k = 0; k < QuantBytes; k += 8)
            {
                var q = *(ulong*)(block + k);
                if ((q & (q >> 1) & 0x5555_5555_5555_5555UL) != 0)
                    return false;
            }
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var offsets = (int*)(state + AlignUp(StandardActivationBytes(n)));
        if (Isa >= InstructionSet.Avx512)
        {
            Tiles(weights, rowBytes, tiles, state, offsets, blocks, y);
            for (var r = tiles * TileRows; r < rows; r++)
                y[r] = Q8_KKernels.DotTQ2_0Avx512(weights + r * rowBytes, state, n);
            return;
        }
        if (_gfni)
            TilesAvx2<GfniPlanes>(weights, rowBytes, tiles, state, offsets, blocks, y);
        else
            TilesAvx2<ShiftPlanes>(weights, rowBytes, tiles, state, offsets, blocks, y);
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = RowDotAvx2(weights + r * rowBytes, state, offsets, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var offsetsAt = AlignUp(StandardActivationBytes(n));
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            if (Isa >= InstructionSet.Avx512)
                TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, offsetsAt, blocks, y + t * yStride, yStride);
            else if (_gfni)
                TilesFourTokensAvx2<GfniPlanes>(weights, rowBytes, tiles, s0, stateStride, offsetsAt, blocks, y + t * yStride, yStride);
            else
                TilesFourTokensAvx2<ShiftPlanes>(weights, rowBytes, tiles, s0, stateStride, offsetsAt, blocks, y + t * yStride, yStride);
            for (var k = 0; k < 4; k++)
            {
                var state = s0 + (long)k * stateStride;
                for (var r = tiles * TileRows; r < rows; r++)
                {
                    y[(t + k) * yStride + r] = Isa >= InstructionSet.Avx512
                        ? Q8_KKernels.DotTQ2_0Avx512(weights + r * rowBytes, state, n)
                        : RowDotAvx2(weights + r * rowBytes, state, (int*)(state + offsetsAt), blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, int* offsets, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var scales = weights + tile * TileRows * rowBytes;
            var q = scales + (long)blocks * TileScaleBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, q += TileQuantBytes, scales += TileScaleBytes, a += ActivationBlockBytes)
            {
                var sums = HalfBlock(q, a + ActivationQuants) + HalfBlock(q + TileQuantBytes / 2, a + ActivationQuants + 128);
                var sumi = Avx512BW.MultiplyAddAdjacent(sums, Vector512<short>.One) + Vector512.Create(offsets[b]);
                acc += Vector512.ConvertToSingle(sumi) * (HalfToSingle512(scales) * Vector512.Create(*(float*)a));
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Σ c·a of one half super-block (8 quant groups, 128 elements) for 16 rows, as int16 pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> HalfBlock(byte* q, byte* a) =>
        ((Group(q, a) + Group(q + 64, a + 4)) + (Group(q + 128, a + 8) + Group(q + 192, a + 12)))
        + ((Group(q + 256, a + 16) + Group(q + 320, a + 20)) + (Group(q + 384, a + 24) + Group(q + 448, a + 28)));

    /// <summary>One quant group's four 2-bit planes against their activations (plane p at a + 32p), for 16 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Group(byte* q, byte* a)
    {
        var v = Vector512.Load(q);
        PrefetchTwoStage(q + QuantPrefetchDistance, QuantPrefetchDistance);
        return Planes(v & Vector512.Create((byte)3), Plane(v, 2), Plane(v, 4), Plane(v, 6), a);
    }

    /// <summary>
    /// (v &gt;&gt; shift) &amp; 3 per byte. With GFNI one affine transform (output bits 0 and 1 = input bits shift and
    /// shift + 1) replaces the shift and the mask: measured in L2, 66 against 54 GB/s for the whole kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Plane(Vector512<byte> v, [ConstantExpected(Min = 2, Max = 6)] byte shift)
    {
        if (Gfni.V512.IsSupported)
            return Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create((((1UL << shift) << 8) | (1UL << (shift + 1))) << 48).AsByte(), 0);
        return Avx512BW.ShiftRightLogical(v.AsUInt16(), shift).AsByte() & Vector512.Create((byte)3);
    }

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's planes are split once for the four tokens. The same
    /// integer sums and float order per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int offsetsAt, int blocks, float* y, long yStride)
    {
        var three = Vector512.Create((byte)3);
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var scales = weights + tile * TileRows * rowBytes;
            var w = scales + (long)blocks * TileScaleBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileQuantBytes, scales += TileScaleBytes)
            {
                Vector512<short> sum0 = default, sum1 = default, sum2 = default, sum3 = default;
                var ab = b * ActivationBlockBytes;
                for (var j = 0; j < QuantBytes / 4; j++)
                {
                    var v = Vector512.Load(w + 64 * j);
                    var p0 = v & three;
                    var p1 = Plane(v, 2);
                    var p2 = Plane(v, 4);
                    var p3 = Plane(v, 6);
                    var o = ab + ActivationQuants + 128 * (j >> 3) + 4 * (j & 7);
                    sum0 += Planes(p0, p1, p2, p3, s0 + o);
                    sum1 += Planes(p0, p1, p2, p3, s1 + o);
                    sum2 += Planes(p0, p1, p2, p3, s2 + o);
                    sum3 += Planes(p0, p1, p2, p3, s3 + o);
                }
                var dw = HalfToSingle512(scales);
                c0 = Combine(c0, sum0, dw, s0 + ab, s0 + offsetsAt, b);
                c1 = Combine(c1, sum1, dw, s1 + ab, s1 + offsetsAt, b);
                c2 = Combine(c2, sum2, dw, s2 + ab, s2 + offsetsAt, b);
                c3 = Combine(c3, sum3, dw, s3 + ab, s3 + offsetsAt, b);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>Σ c·a of a group's four planes for one token: plane p against the four activations at a + 32p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Planes(Vector512<byte> p0, Vector512<byte> p1, Vector512<byte> p2, Vector512<byte> p3, byte* a) =>
        (Avx512BW.MultiplyAddAdjacent(p0, Broadcast512(a)) + Avx512BW.MultiplyAddAdjacent(p1, Broadcast512(a + 32)))
        + (Avx512BW.MultiplyAddAdjacent(p2, Broadcast512(a + 64)) + Avx512BW.MultiplyAddAdjacent(p3, Broadcast512(a + 96)));

    /// <summary>acc + sumi·(d·d_a) for one token's super-block, sumi = Σ c·a − Σa.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Combine(Vector512<float> acc, Vector512<short> sums, Vector512<float> dw, byte* a, byte* offsets, int b)
    {
        var sumi = Avx512BW.MultiplyAddAdjacent(sums, Vector512<short>.One) + Vector512.Create(((int*)offsets)[b]);
        return acc + Vector512.ConvertToSingle(sumi) * (dw * Vector512.Create(*(float*)a));
    }
    /// <summary>How the AVX2 path takes bits [shift, shift + 2) of every byte (shift 2, 4 or 6).</summary>
    private interface IPlanes
    {
        static abstract Vector256<byte> Plane(Vector256<byte> v, [ConstantExpected(Min = 2, Max = 6)] byte shift);
    }

    /// <summary>vpsrlw, then the 2-bit mask.</summary>
    private readonly struct ShiftPlanes : IPlanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Plane(Vector256<byte> v, [ConstantExpected(Min = 2, Max = 6)] byte shift) =>
            Avx2.ShiftRightLogical(v.AsUInt16(), shift).AsByte() & Vector256.Create((byte)3);
    }

    /// <summary>One VEX affine transform: output bits 0 and 1 are input bits shift and shift + 1 (as <see cref="Plane"/>).</summary>
    private readonly struct GfniPlanes : IPlanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Plane(Vector256<byte> v, [ConstantExpected(Min = 2, Max = 6)] byte shift) =>
            Gfni.V256.GaloisFieldAffineTransform(v, Vector256.Create((((1UL << shift) << 8) | (1UL << (shift + 1))) << 48).AsByte(), 0);
    }

    /// <summary>
    /// Whole tiles, one token, AVX2: both eight-row halves of a group per step (one 64-byte line), so the tile streams
    /// once and each broadcast activation serves 16 rows, as on AVX-512.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2<TPlanes>(byte* weights, long rowBytes, int tiles, byte* state, int* offsets, int blocks, float* y)
        where TPlanes : struct, IPlanes
    {
        var three = Vector256.Create((byte)3);
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var twoTo112 = Vector256.Create(TwoTo112);
        for (var tile = 0; tile < tiles; tile++)
        {
            var scales = weights + tile * TileRows * rowBytes;
            var q = scales + (long)blocks * TileScaleBytes;
            var a = state;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, scales += TileScaleBytes, a += ActivationBlockBytes)
            {
                Vector256<short> sumLow = default, sumHigh = default;
                for (var h = 0; h < 2; h++)
                {
                    var ah = a + ActivationQuants + 128 * h;
                    for (var j = 0; j < QuantBytes / 8; j++, q += 64, ah += 4)
                    {
                        PrefetchTwoStage(q + QuantPrefetchDistance, QuantPrefetchDistance);
                        var a0 = Broadcast(ah);
                        var a1 = Broadcast(ah + 32);
                        var a2 = Broadcast(ah + 64);
                        var a3 = Broadcast(ah + 96);
                        var v = Vector256.Load(q);
                        sumLow += (Avx2.MultiplyAddAdjacent(v & three, a0) + Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 2), a1))
                            + (Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 4), a2) + Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 6), a3));
                        v = Vector256.Load(q + 32);
                        sumHigh += (Avx2.MultiplyAddAdjacent(v & three, a0) + Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 2), a1))
                            + (Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 4), a2) + Avx2.MultiplyAddAdjacent(TPlanes.Plane(v, 6), a3));
                    }
                }
                var offset = Vector256.Create(offsets[b]);
                var da = Vector256.Create(*(float*)a);
                low += Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(sumLow, Vector256<short>.One) + offset)
                    * (HalfToSingle(scales, signAndMagnitude, twoTo112) * da);
                high += Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(sumHigh, Vector256<short>.One) + offset)
                    * (HalfToSingle(scales + 2 * 8, signAndMagnitude, twoTo112) * da);
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>
    /// GEMM tile, AVX2: four tokens × eight rows per pass (the second half re-reads the tile from cache); each group's
    /// planes are split once for the four tokens. The same integer sums and float order per token as <see cref="TilesAvx2{TPlanes}(byte*, long, int, byte*, int*, int, float*)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokensAvx2<TPlanes>(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int offsetsAt, int blocks,
        float* y, long yStride)
        where TPlanes : struct, IPlanes
    {
        var three = Vector256.Create((byte)3);
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var twoTo112 = Vector256.Create(TwoTo112);
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            for (var half = 0; half < 2; half++)
            {
                var scales = weights + tile * TileRows * rowBytes + 16 * half;
                var w = weights + tile * TileRows * rowBytes + (long)blocks * TileScaleBytes + 32 * half;
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (var b = 0; b < blocks; b++, scales += TileScaleBytes)
                {
                    Vector256<short> sum0 = default, sum1 = default, sum2 = default, sum3 = default;
                    var ab = b * ActivationBlockBytes;
                    for (var j = 0; j < QuantBytes / 4; j++, w += 64)
                    {
                        var v = Vector256.Load(w);
                        var p0 = v & three;
                        var p1 = TPlanes.Plane(v, 2);
                        var p2 = TPlanes.Plane(v, 4);
                        var p3 = TPlanes.Plane(v, 6);
                        var o = ab + ActivationQuants + 128 * (j >> 3) + 4 * (j & 7);
                        sum0 += Planes256(p0, p1, p2, p3, s0 + o);
                        sum1 += Planes256(p0, p1, p2, p3, s1 + o);
                        sum2 += Planes256(p0, p1, p2, p3, s2 + o);
                        sum3 += Planes256(p0, p1, p2, p3, s3 + o);
                    }
                    var dw = HalfToSingle(scales, signAndMagnitude, twoTo112);
                    c0 = Combine256(c0, sum0, dw, s0 + ab, s0 + offsetsAt, b);
                    c1 = Combine256(c1, sum1, dw, s1 + ab, s1 + offsetsAt, b);
                    c2 = Combine256(c2, sum2, dw, s2 + ab, s2 + offsetsAt, b);
                    c3 = Combine256(c3, sum3, dw, s3 + ab, s3 + offsetsAt, b);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>Σ c·a of a group's four planes for one token and eight rows: plane p against the four activations at a + 32p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Planes256(Vector256<byte> p0, Vector256<byte> p1, Vector256<byte> p2, Vector256<byte> p3, byte* a) =>
        (Avx2.MultiplyAddAdjacent(p0, Broadcast(a)) + Avx2.MultiplyAddAdjacent(p1, Broadcast(a + 32)))
        + (Avx2.MultiplyAddAdjacent(p2, Broadcast(a + 64)) + Avx2.MultiplyAddAdjacent(p3, Broadcast(a + 96)));

    /// <summary>acc + sumi·(d·d_a) for one token's super-block and eight rows, sumi = Σ c·a − Σa.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Combine256(Vector256<float> acc, Vector256<short> sums, Vector256<float> dw, byte* a, byte* offsets, int b)
    {
        var sumi = Avx2.MultiplyAddAdjacent(sums, Vector256<short>.One) + Vector256.Create(((int*)offsets)[b]);
        return acc + Vector256.ConvertToSingle(sumi) * (dw * Vector256.Create(*(float*)a));
    }

    /// <summary>
    /// One GGUF-layout row (after the last whole tile), AVX2, with the tiles' exact arithmetic: the integer sum per
    /// super-block (any 2-bit code: 16 products per int16 slot), then sumi·(d·d_a) added in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowDotAvx2(byte* row, byte* state, int* offsets, int blocks)
    {
        var three = Vector256.Create((byte)3);
        var sum = 0f;
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var a = state + b * ActivationBlockBytes + ActivationQuants;
            var sums = Vector256<short>.Zero;
            for (var h = 0; h < 2; h++)
            {
                var v = Vector256.Load(block + 32 * h);
                var ah = a + 128 * h;
                sums += Avx2.MultiplyAddAdjacent(v & three, Vector256.Load((sbyte*)ah))
                    + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v.AsUInt16(), 2).AsByte() & three, Vector256.Load((sbyte*)(ah + 32)))
                    + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & three, Vector256.Load((sbyte*)(ah + 64)))
                    + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v.AsUInt16(), 6).AsByte() & three, Vector256.Load((sbyte*)(ah + 96)));
            }
            var sumi = Vector256.Sum(Avx2.MultiplyAddAdjacent(sums, Vector256<short>.One)) + offsets[b];
            sum += sumi * (HalfLookup.ToSingle(block + QuantBytes) * *(float*)(state + b * ActivationBlockBytes));
        }
        return sum;
    }
}
