using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// F16 or BF16 weights · activations of the same type over 16-row interleaved tiles, AVX-512. A tile stores, per
/// column k, the 16 rows' weights contiguously (32 bytes), so one widening load gives column k of 16 rows as the lanes
/// of a vector and one FMA against x_k broadcast advances 16 rows: no horizontal sum, four independent accumulators
/// (columns k mod 4). The widening is <typeparamref name="TFormat"/>'s: nine instructions per 16 F16 weights, three
/// per 16 F16 weights stored scaled by 2¹⁰ (<see cref="ScaledF16Column"/>), two per 16 BF16 weights (BF16 is the top
/// half of an f32).
/// <para>
/// The activations, rounded to the weight type as ggml does, are kept widened in the sidecar. The float sum runs in
/// four column phases combined at the end, not in ggml's order, so results differ from the reference by f32 rounding
/// only; a token's result is the same alone or in a batch. Rows after the last whole tile keep the GGUF layout and go
/// through the row kernel, whose activation state this kernel's state begins with.
/// </para>
/// <para>
/// The AVX2 path reads the same tiles as two halves of eight rows (a column's first 16 bytes are rows 0-7), with the
/// same four column phases and the same FMAs per lane, so its results are the AVX-512 path's bits.
/// </para>
/// </summary>
public abstract unsafe class HalfInterleavedMatVec<TFormat>(InstructionSet isa, string description)
    : MatVecKernel(TFormat.Type, isa, $"{(isa >= InstructionSet.Avx512 ? "AVX-512" : "AVX2")} {description}")
    where TFormat : struct, IHalfColumnFormat
{
    private const int ColumnBytes = TileRows * 2;

    private readonly MatVecKernel _rows = KernelTable.Get(TFormat.Type, isa);

    /// <summary>The AVX-512 path (AVX-512 F/BW).</summary>
    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    /// <summary>The AVX-512 path, or the AVX2 path (AVX2 + FMA).</summary>
    public static bool IsSupportedAt(InstructionSet isa) =>
        isa >= InstructionSet.Avx512 ? IsSupported : isa == InstructionSet.Avx2 && KernelIsa.IsSupported(isa);

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override int ActivationBytes(int n) => _rows.ActivationBytes(n) + AlignUp(n * sizeof(float));

    private float* Singles(byte* state, int n) => (float*)(state + _rows.ActivationBytes(n));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        _rows.PrepareActivations(x, n, state);
        var halves = (ushort*)state;
        var singles = Singles(state, n);
        var i = 0;
        if (Isa >= InstructionSet.Avx512)
        {
            for (; i + 16 <= n; i += 16)
                TFormat.Widen(Vector256.Load(halves + i)).Store(singles + i);
        }
        else
        {
            for (; i + 8 <= n; i += 8)
                TFormat.Widen256(Vector128.Load(halves + i)).Store(singles + i);
        }
        for (; i < n; i++)
            singles[i] = TFormat.ToSingle(halves[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || rowBytes != 2L * n)
            return false;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!TFormat.Accepts((ushort*)source, tiles * tileBytes / 2))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = (ushort*)(destination + tile * tileBytes);
            // Column by column: the destination fills sequentially while the 16 source rows are read as 16 streams.
            var first = (ushort*)(source + tile * tileBytes);
            for (var k = 0; k < n; k++, dst += TileRows)
                for (var r = 0; r < TileRows; r++)
                    dst[r] = TFormat.Stored(first[r * n + k]);
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var tiles = rows / TileRows;
        if (Isa >= InstructionSet.Avx512)
            Tiles(weights, rowBytes, tiles, Singles(state, n), n, y);
        else
            TilesAvx2(weights, rowBytes, tiles, Singles(state, n), n, y);
        if (tiles * TileRows < rows)
            _rows.MatVec(weights + tiles * TileRows * rowBytes, rowBytes, rows - tiles * TileRows, state, n, y + tiles * TileRows);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var tiles = rows / TileRows;
        var singlesOffset = _rows.ActivationBytes(n);
        var t = 0;
        if (Isa >= InstructionSet.Avx512)
        {
            for (; t + 4 <= tokens; t += 4)
                Tiles(weights, rowBytes, tiles, states + (long)t * stateStride + singlesOffset, stateStride, n, y + t * yStride, yStride);
            for (; t < tokens; t++)
                Tiles(weights, rowBytes, tiles, Singles(states + (long)t * stateStride, n), n, y + t * yStride);
        }
        else
        {
            for (; t + 2 <= tokens; t += 2)
            {
                var first = states + (long)t * stateStride + singlesOffset;
                TilesAvx2((float*)first, (float*)(first + stateStride), weights, rowBytes, tiles, n, y + t * yStride, yStride);
            }
            for (; t < tokens; t++)
                TilesAvx2(weights, rowBytes, tiles, Singles(states + (long)t * stateStride, n), n, y + t * yStride);
        }
        if (tiles * TileRows < rows)
            _rows.MatMat(weights + tiles * TileRows * rowBytes, rowBytes, rows - tiles * TileRows, states, stateStride, tokens, n,
                y + tiles * TileRows, yStride);
    }

    /// <summary>Column k of 16 rows as floats (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Column(byte* column) => TFormat.WidenWeights(Vector256.Load((short*)column));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mad(byte* column, float* x, Vector512<float> acc) =>
        Avx512F.FusedMultiplyAdd(Column(column), Vector512.Create(*x), acc);

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, float* x, int n, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            var k = 0;
            for (; k + 4 <= n; k += 4, w += 4 * ColumnBytes)
            {
                PrefetchTwoStage(w + PrefetchDistance, PrefetchDistance);
                PrefetchTwoStage(w + PrefetchDistance + 64, PrefetchDistance);
                c0 = Mad(w, x + k, c0);
                c1 = Mad(w + ColumnBytes, x + k + 1, c1);
                c2 = Mad(w + 2 * ColumnBytes, x + k + 2, c2);
                c3 = Mad(w + 3 * ColumnBytes, x + k + 3, c3);
            }
            for (; k < n; k++, w += ColumnBytes)
                c0 = Mad(w, x + k, c0);
            (c0 + c1 + (c2 + c3)).Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// GEMM tile: four tokens × 16 rows, each column converted once for the four tokens; per token the same four
    /// column phases as <see cref="Tiles(byte*, long, int, float*, int, float*)"/>, so batching does not change results.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* x0, int stride, int n, float* y, long yStride)
    {
        var a0 = (float*)x0;
        var a1 = (float*)(x0 + stride);
        var a2 = (float*)(x0 + 2 * stride);
        var a3 = (float*)(x0 + 3 * stride);
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
            Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
            Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
            Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
            var k = 0;
            for (; k + 4 <= n; k += 4, w += 4 * ColumnBytes)
            {
                var v = Column(w);
                c00 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a0[k]), c00);
                c10 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a1[k]), c10);
                c20 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a2[k]), c20);
                c30 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a3[k]), c30);
                v = Column(w + ColumnBytes);
                c01 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a0[k + 1]), c01);
                c11 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a1[k + 1]), c11);
                c21 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a2[k + 1]), c21);
                c31 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a3[k + 1]), c31);
                v = Column(w + 2 * ColumnBytes);
                c02 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a0[k + 2]), c02);
                c12 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a1[k + 2]), c12);
                c22 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a2[k + 2]), c22);
                c32 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a3[k + 2]), c32);
                v = Column(w + 3 * ColumnBytes);
                c03 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a0[k + 3]), c03);
                c13 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a1[k + 3]), c13);
                c23 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a2[k + 3]), c23);
                c33 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a3[k + 3]), c33);
            }
            for (; k < n; k++, w += ColumnBytes)
            {
                var v = Column(w);
                c00 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a0[k]), c00);
                c10 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a1[k]), c10);
                c20 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a2[k]), c20);
                c30 = Avx512F.FusedMultiplyAdd(v, Vector512.Create(a3[k]), c30);
            }
            var yt = y + tile * TileRows;
            (c00 + c01 + (c02 + c03)).Store(yt);
            (c10 + c11 + (c12 + c13)).Store(yt + yStride);
            (c20 + c21 + (c22 + c23)).Store(yt + 2 * yStride);
            (c30 + c31 + (c32 + c33)).Store(yt + 3 * yStride);
        }
    }

    /// <summary>Rows 0-7 (<paramref name="half"/> 0) or 8-15 (half 1) of column k as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfColumn(byte* column, int half) => TFormat.WidenWeights256(Vector128.Load((short*)(column + 16 * half)));

    /// <summary>Whole tiles, one token, AVX2: both eight-row halves in one pass, four column phases each.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, float* x, int n, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector256<float> l0 = default, l1 = default, l2 = default, l3 = default;
            Vector256<float> h0 = default, h1 = default, h2 = default, h3 = default;
            var k = 0;
            for (; k + 4 <= n; k += 4, w += 4 * ColumnBytes)
            {
                PrefetchTwoStage(w + PrefetchDistance, PrefetchDistance);
                PrefetchTwoStage(w + PrefetchDistance + 64, PrefetchDistance);
                var x0 = Vector256.Create(x[k]);
                l0 = Fma.MultiplyAdd(HalfColumn(w, 0), x0, l0);
                h0 = Fma.MultiplyAdd(HalfColumn(w, 1), x0, h0);
                var x1 = Vector256.Create(x[k + 1]);
                l1 = Fma.MultiplyAdd(HalfColumn(w + ColumnBytes, 0), x1, l1);
                h1 = Fma.MultiplyAdd(HalfColumn(w + ColumnBytes, 1), x1, h1);
                var x2 = Vector256.Create(x[k + 2]);
                l2 = Fma.MultiplyAdd(HalfColumn(w + 2 * ColumnBytes, 0), x2, l2);
                h2 = Fma.MultiplyAdd(HalfColumn(w + 2 * ColumnBytes, 1), x2, h2);
                var x3 = Vector256.Create(x[k + 3]);
                l3 = Fma.MultiplyAdd(HalfColumn(w + 3 * ColumnBytes, 0), x3, l3);
                h3 = Fma.MultiplyAdd(HalfColumn(w + 3 * ColumnBytes, 1), x3, h3);
            }
            for (; k < n; k++, w += ColumnBytes)
            {
                var xk = Vector256.Create(x[k]);
                l0 = Fma.MultiplyAdd(HalfColumn(w, 0), xk, l0);
                h0 = Fma.MultiplyAdd(HalfColumn(w, 1), xk, h0);
            }
            (l0 + l1 + (l2 + l3)).Store(y + tile * TileRows);
            (h0 + h1 + (h2 + h3)).Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>
    /// GEMM tile, AVX2: two tokens × eight rows at a time (eight accumulators), each half column widened once for both
    /// tokens; per token the same four column phases as the one-token pass, so batching does not change results.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(float* a0, float* a1, byte* weights, long rowBytes, int tiles, int n, float* y, long yStride)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            for (var half = 0; half < 2; half++)
            {
                var w = weights + tile * TileRows * rowBytes;
                Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
                Vector256<float> c10 = default, c11 = default, c12 = default, c13 = default;
                var k = 0;
                for (; k + 4 <= n; k += 4, w += 4 * ColumnBytes)
                {
                    var v = HalfColumn(w, half);
                    c00 = Fma.MultiplyAdd(v, Vector256.Create(a0[k]), c00);
                    c10 = Fma.MultiplyAdd(v, Vector256.Create(a1[k]), c10);
                    v = HalfColumn(w + ColumnBytes, half);
                    c01 = Fma.MultiplyAdd(v, Vector256.Create(a0[k + 1]), c01);
                    c11 = Fma.MultiplyAdd(v, Vector256.Create(a1[k + 1]), c11);
                    v = HalfColumn(w + 2 * ColumnBytes, half);
                    c02 = Fma.MultiplyAdd(v, Vector256.Create(a0[k + 2]), c02);
                    c12 = Fma.MultiplyAdd(v, Vector256.Create(a1[k + 2]), c12);
                    v = HalfColumn(w + 3 * ColumnBytes, half);
                    c03 = Fma.MultiplyAdd(v, Vector256.Create(a0[k + 3]), c03);
                    c13 = Fma.MultiplyAdd(v, Vector256.Create(a1[k + 3]), c13);
                }
                for (; k < n; k++, w += ColumnBytes)
                {
                    var v = HalfColumn(w, half);
                    c00 = Fma.MultiplyAdd(v, Vector256.Create(a0[k]), c00);
                    c10 = Fma.MultiplyAdd(v, Vector256.Create(a1[k]), c10);
                }
                var yt = y + tile * TileRows + 8 * half;
                (c00 + c01 + (c02 + c03)).Store(yt);
                (c10 + c11 + (c12 + c13)).Store(yt + yStride);
            }
        }
    }
}

/// <summary>A 16-bit float weight type of <see cref="HalfInterleavedMatVec{TFormat}"/>: its widening to f32 and its row kernel.</summary>
public unsafe interface IHalfColumnFormat
{
    static abstract GgmlType Type { get; }

    /// <summary>16 activation values, exactly (times a power of two where the format's weights carry its inverse).</summary>
    static abstract Vector512<float> Widen(Vector256<ushort> bits);

    /// <summary>8 activation values, as <see cref="Widen"/> gives them (the AVX2 path).</summary>
    static abstract Vector256<float> Widen256(Vector128<ushort> bits);

    static abstract float ToSingle(ushort bits);

    /// <summary>16 stored weights (<see cref="Stored"/>) as floats, exactly (up to the power of two the activations carry), for the values <see cref="Accepts"/> lets into a tile.</summary>
    static abstract Vector512<float> WidenWeights(Vector256<short> bits);

    /// <summary>8 stored weights, as <see cref="WidenWeights"/> gives them (the AVX2 path).</summary>
    static abstract Vector256<float> WidenWeights256(Vector128<short> bits);

    /// <summary>Whether every one of <paramref name="count"/> weights can be widened by <see cref="WidenWeights"/>.</summary>
    static abstract bool Accepts(ushort* values, long count);

    /// <summary>A weight as its tile stores it (for a weight <see cref="Accepts"/> lets in).</summary>
    static abstract ushort Stored(ushort bits);
}

/// <summary>
/// F16 tiles. Weights go through <see cref="FloatKernels.FiniteHalfToSingle"/>, exact and free of denormal floats (an
/// FMA with a denormal input costs a microcode assist on Intel cores), so weights that are Inf or NaN are refused.
/// </summary>
public readonly unsafe struct F16Column : IHalfColumnFormat
{
    public static GgmlType Type => GgmlType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector256<ushort> bits) => FloatKernels.HalfToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(Vector128<ushort> bits) => FloatKernelsAvx2.HalfToSingle(bits);

    public static float ToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenWeights(Vector256<short> bits) => FloatKernels.FiniteHalfToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenWeights256(Vector128<short> bits) => FloatKernelsAvx2.HalfToSingle(bits.AsUInt16());

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool Accepts(ushort* halves, long count)
    {
        var exponent = Vector512.Create((ushort)0x7C00);
        long i = 0;
        for (; i + 32 <= count; i += 32)
            if (Vector512.EqualsAny(Vector512.Load(halves + i) & exponent, exponent))
                return false;
        for (; i < count; i++)
            if ((halves[i] & 0x7C00) == 0x7C00)
                return false;
        return true;
    }

    public static ushort Stored(ushort bits) => bits;
}

/// <summary>
/// F16 tiles that store every weight times 2¹⁰ and every activation times 2¹⁰² so that widening a weight takes three
/// instructions where <see cref="F16Column"/> takes nine. The weights' sign-extended bits shifted left by 13 (three
/// copies of the sign cleared) are an f32 whose value is the stored half's times 2⁻¹¹² — exact for a normal half, but
/// a denormal f32 for a subnormal one, which an FMA input must not be (microcode assist on Intel cores). Scaled by 2¹⁰,
/// every subnormal half is normal, so every widened weight is w·2⁻¹⁰² exactly and normal (or zero); the activations,
/// f16 values below 2¹⁶, times 2¹⁰² stay far below f32's range, so each product w·x enters the FMA exactly as in
/// <see cref="F16Column"/>'s tiles, and the sums are the same bits. The scaling overflows for |w| ≥ 64: a matrix
/// with such a weight (or Inf/NaN) is refused and goes to <see cref="F16InterleavedMatVec"/>. Streaming 256 MiB of
/// 4096-column tiles on the Intel host (variants alternated 15 times): 11.2 against 9.7-9.8 GB/s, reading alone 13.5.
/// </summary>
public readonly unsafe struct ScaledF16Column : IHalfColumnFormat
{
    /// <summary>Exponent field of the largest accepted weight: 20 (|w| &lt; 2⁶), which the scaling takes to 30, the largest finite.</summary>
    private const ushort MaxMagnitude = (20 << 10) | 0x3FF;

    private const int WeightScaleLog2 = 10;

    /// <summary>2¹⁰²: the 2⁻¹¹² of the widening and the 2¹⁰ of the stored weights, undone through the activations.</summary>
    private static readonly float ActivationScale = BitConverter.Int32BitsToSingle((127 + 112 - WeightScaleLog2) << 23);

    public static GgmlType Type => GgmlType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector256<ushort> bits) => FloatKernels.HalfToSingle(bits) * ActivationScale;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(Vector128<ushort> bits) => FloatKernelsAvx2.HalfToSingle(bits) * ActivationScale;

    public static float ToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits) * ActivationScale;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenWeights(Vector256<short> bits) =>
        (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(bits), 13) & Vector512.Create(unchecked((int)0x8FFF_E000))).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenWeights256(Vector128<short> bits) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(bits), 13) & Vector256.Create(unchecked((int)0x8FFF_E000))).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool Accepts(ushort* halves, long count)
    {
        var magnitude = Vector512.Create((ushort)0x7FFF);
        var largest = Vector512.Create(MaxMagnitude);
        long i = 0;
        for (; i + 32 <= count; i += 32)
            if (Vector512.GreaterThanAny(Vector512.Load(halves + i) & magnitude, largest))
                return false;
        for (; i < count; i++)
            if ((halves[i] & 0x7FFF) > MaxMagnitude)
                return false;
        return true;
    }

    /// <summary>The half times 2¹⁰, exactly: a normal one gains 10 in its exponent; a subnormal one (at most 10 significant bits) is renormalized.</summary>
    public static ushort Stored(ushort bits) => (bits & 0x7C00) != 0
        ? (ushort)(bits + (WeightScaleLog2 << 10))
        : BitConverter.HalfToUInt16Bits((Half)((float)BitConverter.UInt16BitsToHalf(bits) * (1 << WeightScaleLog2)));
}

/// <summary>
/// BF16 tiles: a BF16 value is the top half of an f32, so widening is a zero-extension and a shift, exact for every
/// value (Inf and NaN included, which the FMAs then propagate as the reference's sum does). A subnormal BF16 weight
/// becomes a denormal f32 input of an FMA, which costs Intel cores a microcode assist; trained weights have none.
/// </summary>
public readonly unsafe struct BF16Column : IHalfColumnFormat
{
    public static GgmlType Type => GgmlType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector256<ushort> bits) => FloatConversionsAvx512.Bf16ToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(Vector128<ushort> bits) => Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(bits).AsUInt32(), 16).AsSingle();

    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenWeights(Vector256<short> bits) => FloatConversionsAvx512.Bf16ToSingle(bits.AsUInt16());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenWeights256(Vector128<short> bits) => Widen256(bits.AsUInt16());

    public static bool Accepts(ushort* values, long count) => true;

    public static ushort Stored(ushort bits) => bits;
}

/// <summary>F16 weights over 16-row interleaved tiles (<see cref="HalfInterleavedMatVec{TFormat}"/>).</summary>
public sealed class F16InterleavedMatVec(InstructionSet isa = InstructionSet.Avx512) : HalfInterleavedMatVec<F16Column>(isa, "16-row interleaved");

/// <summary>F16 weights with |w| &lt; 64 over 16-row interleaved tiles, stored scaled (<see cref="ScaledF16Column"/>).</summary>
public sealed class ScaledF16InterleavedMatVec(InstructionSet isa = InstructionSet.Avx512)
    : HalfInterleavedMatVec<ScaledF16Column>(isa, "16-row interleaved, weights scaled by 2^10");

/// <summary>BF16 weights over 16-row interleaved tiles (<see cref="HalfInterleavedMatVec{TFormat}"/>).</summary>
public sealed class BF16InterleavedMatVec(InstructionSet isa = InstructionSet.Avx512) : HalfInterleavedMatVec<BF16Column>(isa, "16-row interleaved");
