using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// T-MAC bit-serial lookup-table GEMV for Q4_0, Q4_1 and Q2_K (lut-kernels.md §1.2-§1.7, §2.1). No weight is
/// dequantized: each b-bit code u = Σᵢ 2ⁱβᵢ is split into b bit planes, each bit read as sᵢ = 2βᵢ − 1 ∈ {±1}, so
/// u = ½Σᵢ 2ⁱsᵢ + (2ᵇ − 1)/2. Four activations x₀..x₃ form a group with a 16-entry table
/// T[p] = Σₜ (bit t of p ? +xₜ : −xₜ) (odd: T[15 − p] = −T[p], so 8 entries are computed). The four plane-bits of one
/// weight group are a 4-bit index into that table, so a row's sum Σⱼ Σᵢ 2ⁱ Tⱼ[indexᵢⱼ] is gathered with byte
/// shuffles and Σ u·x = ½·sum + (2ᵇ − 1)/2 · Σx.
/// <list type="bullet">
/// <item>Q4_0/Q4_1 (T-MAC tables from the f32 input): int8 T with one scale s per block of 32 (the largest group
/// Σ|xₜ| / 127, round to nearest), plus an int8 residual table R = round((v/s − T)·254) looked up for planes 2 and
/// 3 only, which carry 80/85 of the error variance: NMSE ≈ 1/15 of llama.cpp's Q8_0 activations.</item>
/// <item>Q2_K (tables from llama.cpp's Q8_K activations, exact): the integer T = Σₜ ±qₜ (|T| ≤ 508) as two int8
/// tables, T = 4·H + L, so the integer sums are exactly llama.cpp's Q2_K·Q8_K ones.</item>
/// </list>
/// <para>
/// Weight layout (written by <see cref="TryPrepareWeights"/>; exactly rows·rowBytes bytes): rows are cut in tiles
/// of <see cref="RowTile"/> rows (the last may be shorter) and each tile in chunks of 32 rows (the last may be
/// shorter; hc = its rows). A tile is one sequential stream. Index bytes come in 2·hc-byte vectors: byte 2r and
/// 2r + 1 belong to row r, so a multiply-add of adjacent bytes leaves one int16 per row.
/// </para>
/// <list type="bullet">
/// <item>Q4_0 / Q4_1 (tile 128 rows): per weight block of 32 (one activation block, 8 tables): per chunk, 8 index
/// vectors (vector j: byte 2r = plane 0 | plane 2 ≪ 4, byte 2r+1 = plane 1 | plane 3 ≪ 4 of row r on table j), then
/// hc f16 scales d (then hc f16 mins m for Q4_1) in row order: 18·hc (20·hc) bytes.</item>
/// <item>Q2_K (tile 32 rows, one chunk): per super-block, 8 pairs of sub-blocks (a = 2p, b = 2p+1; 8 tables): 4
/// index vectors (vector v: byte 2r = plane 0 of table 2v | plane 0 of table 2v+1 ≪ 4, byte 2r+1 the same for
/// plane 1), then the hc GGUF scale bytes (sc | m ≪ 4) of sub-block a and the hc of b; after the 8 pairs, hc f16 d
/// then hc f16 dmin, in <see cref="Q2_KScalePosition"/> order: 84·hc bytes.</item>
/// </list>
/// <para>
/// Activation sidecar (after the llama.cpp activation row, built once per input vector): Q4_0/Q4_1, per block of
/// 32: 8 × (T, R) of 16 int8 each, then f32 a = ½s, b (Q4_0: −½Σx; Q4_1: 15/2·Σx), Σx, a/254. Q2_K, per
/// super-block: per pair 8 × (H, L), then int16 (3·Xa, 3·Xb) and (Xa, Xb) with X the sub-block's Σq; then f32
/// ½d and d of the Q8_K block.
/// </para>
/// <para>
/// Every variant computes the same integers and the same f32 operations in the same order as
/// <see cref="BitSerialLutReference"/>, so all are bit-identical to it.
/// </para>
/// </summary>
public abstract unsafe class BitSerialLutMatVec : MatVecKernel
{
    public const int ChunkRows = 32;
    internal const int Q4Record = 272;
    internal const int Q2_KPairRecord = 272;
    internal const int Q2_KSuperBlockRecord = 8 * Q2_KPairRecord + 16;

    private protected BitSerialLutMatVec(GgmlType weightType, InstructionSet isa, string name)
        : base(weightType, isa, name)
    {
        if (!Handles(weightType))
            throw new ArgumentException($"no bit-serial LUT layout for {weightType}", nameof(weightType));
    }

    public static bool Handles(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q2_K;

    /// <summary>Rows per tile of <paramref name="type"/>'s layout (it depends only on the type).</summary>
    public static int TileRows(GgmlType type) => type == GgmlType.Q2_K ? ChunkRows : 4 * ChunkRows;

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows(WeightType);

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(SidecarBytes(WeightType, n));

    internal static int SidecarBytes(GgmlType type, int n) =>
        type == GgmlType.Q2_K ? n / 256 * Q2_KSuperBlockRecord : n / 32 * Q4Record;

    /// <summary>The sidecar of a prepared state.</summary>
    private protected byte* Sidecar(byte* state, int n) => state + AlignUp(StandardActivationBytes(n));

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        QuantizeStandardRow(x, n, state);
        BitSerialLutTables.Build(WeightType, x, n, state, Sidecar(state, n), vectorized: Isa != InstructionSet.Scalar);
    }

    private void QuantizeStandardRow(float* x, int n, byte* state)
    {
        switch (ActivationType, Isa)
        {
            case (GgmlType.Q8_0, InstructionSet.Avx512):
                Q8_0Kernels.QuantizeRowAvx512(x, state, n);
                return;
            case (GgmlType.Q8_0, InstructionSet.Vector128 or InstructionSet.Avx2):
                Q8_0Kernels.QuantizeRowVector128(x, state, n);
                return;
            case (GgmlType.Q8_1, InstructionSet.Vector128 or InstructionSet.Avx2 or InstructionSet.Avx512):
                Q8_1Kernels.QuantizeRowVector128(x, state, n);
                return;
            case (GgmlType.Q8_K, InstructionSet.Avx512):
                Q8_KKernels.QuantizeRowAvx512(x, state, n);
                return;
            default:
                QuantReference.QuantizeActivations(ActivationType, new ReadOnlySpan<float>(x, n), new Span<byte>(state, StandardActivationBytes(n)));
                return;
        }
    }

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        BitSerialLutLayout.TryRepack(WeightType, source, rowBytes, rows, n, destination);

    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = Sidecar(state, n);
        var tile = RowTile;
        for (var first = 0; first < rows; first += tile)
        {
            var h = Math.Min(tile, rows - first);
            var w = weights + first * rowBytes;
            var full = h / ChunkRows;
            if (full > 0)
                FullChunks(w, h, full, sidecar, n, y + first);
            if (h % ChunkRows != 0)
                BitSerialLutReference.Chunk(WeightType, w, h, full, sidecar, n, y + first + full * ChunkRows);
        }
    }

    /// <summary>
    /// y for the first <paramref name="chunks"/> (whole) 32-row chunks of a tile of <paramref name="h"/> rows at
    /// <paramref name="tile"/>; the rows after them, if any, are left to the reference.
    /// </summary>
    private protected abstract void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y);

    /// <summary>
    /// Where row r (0..31) of a whole Q2_K chunk keeps its d and dmin: the order in which the AVX-512 kernel's
    /// word unpack leaves the int32 row sums (rows 0-3, 8-11, 16-19, 24-27, then 4-7, 12-15, 20-23, 28-31), so
    /// the scales load straight into place. A shorter last chunk keeps row order.
    /// </summary>
    internal static int Q2_KScalePosition(int row, int chunkRows) =>
        chunkRows < ChunkRows ? row : (row % 8 < 4 ? 0 : 16) + 4 * (row / 8) + row % 4;
}

/// <summary>The plain scalar form of the bit-serial LUT kernel: the semantics every SIMD variant reproduces bit for bit.</summary>
public sealed unsafe class BitSerialLutScalar(GgmlType weightType)
    : BitSerialLutMatVec(weightType, InstructionSet.Scalar, "scalar bit-serial LUT")
{
    private protected override void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y)
    {
        for (var c = 0; c < chunks; c++)
            BitSerialLutReference.Chunk(WeightType, tile, h, c, sidecar, n, y + c * ChunkRows);
    }
}

/// <summary>The activation tables (identical for every variant: they are built by this one scalar routine).</summary>
internal static unsafe class BitSerialLutTables
{
    /// <summary>
    /// Q4_0/Q4_1 tables from the f32 input (T-MAC); Q2_K tables from the Q8_K row already at <paramref name="state"/>,
    /// exact, so that the kernel's integer sums are llama.cpp's.
    /// </summary>
    /// <remarks>
    /// <paramref name="vectorized"/> computes the same f32 operations in the same order with Vector256 (the
    /// tables are bit-identical; the scalar kernel keeps the scalar build so that the tests compare the two).
    /// </remarks>
    public static void Build(GgmlType type, float* x, int n, byte* state, byte* sidecar, bool vectorized)
    {
        vectorized &= Vector256.IsHardwareAccelerated;
        if (type == GgmlType.Q2_K)
        {
            for (var b = 0; b < n / 256; b++, state += Q8_KBytes, sidecar += BitSerialLutMatVec.Q2_KSuperBlockRecord)
                BuildQ2_K(state, sidecar, vectorized);
            return;
        }
        var bias = type == GgmlType.Q4_0 ? -0.5f : 7.5f;
        for (var b = 0; b < n / 32; b++, x += 32, sidecar += BitSerialLutMatVec.Q4Record)
        {
            var s = Scale(x, 8);
            if (vectorized)
                TablesVector256(x, 8, s, (sbyte*)sidecar);
            else
                Tables(x, 8, s, (sbyte*)sidecar);
            var sum = 0f;
            for (var i = 0; i < 32; i++)
                sum += x[i];
            var f = (float*)(sidecar + 256);
            f[0] = 0.5f * s;
            f[1] = bias * sum;
            f[2] = sum;
            f[3] = 0.5f * s / ResidualSteps;
        }
    }

    private const int Q8_KBytes = 292;

    /// <summary>Residual table units per main table unit: |v/s − T[p]| ≤ ½, so ±127.</summary>
    private const float ResidualSteps = 254f;

    /// <summary>
    /// Per pair of sub-blocks, for each group of 4 Q8_K values q: the integer T[p] = Σₜ ±qₜ (|T| ≤ 508) as
    /// T = 4·H + L, H = T ≫ 2 (int8) and L = T &amp; 3, stored as the table H then the table L.
    /// </summary>
    private static void BuildQ2_K(byte* q8k, byte* record, bool vectorized)
    {
        var q = (sbyte*)(q8k + 4);
        for (var p = 0; p < 8; p++, record += BitSerialLutMatVec.Q2_KPairRecord)
        {
            var tables = (sbyte*)record;
            for (var g = 0; g < 8; g++)
            {
                var a = q + 32 * p + 4 * g;
                if (vectorized)
                {
                    var t = Vector256.Create((short)a[0]) * Sign16(0) + Vector256.Create((short)a[1]) * Sign16(1)
                        + Vector256.Create((short)a[2]) * Sign16(2) + Vector256.Create((short)a[3]) * Sign16(3);
                    Vector256.Narrow(Vector256.ShiftRightArithmetic(t, 2), t & Vector256.Create((short)3)).Store(tables + 32 * g);
                    continue;
                }
                for (var index = 0; index < 16; index++)
                {
                    var t = ((index & 1) != 0 ? a[0] : -a[0]) + ((index & 2) != 0 ? a[1] : -a[1])
                        + ((index & 4) != 0 ? a[2] : -a[2]) + ((index & 8) != 0 ? a[3] : -a[3]);
                    tables[32 * g + index] = (sbyte)(t >> 2);
                    tables[32 * g + 16 + index] = (sbyte)(t & 3);
                }
            }
            int xa = 0, xb = 0;
            for (var i = 0; i < 16; i++)
            {
                xa += q[32 * p + i];
                xb += q[32 * p + 16 + i];
            }
            var sums = (short*)(record + 256);
            sums[0] = (short)(3 * xa);
            sums[1] = (short)(3 * xb);
            sums[2] = (short)xa;
            sums[3] = (short)xb;
            ((long*)(record + 264))[0] = 0;
        }
        var d = *(float*)q8k;
        var f = (float*)record;
        f[0] = 0.5f * d;
        f[1] = d;
        f[2] = f[3] = 0;
    }

    /// <summary>±1 per table index for activation t of a group: +1 where bit t of the index is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Sign16(int t) =>
        (Vector256.ShiftRightLogical(Vector256.Create((short)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), t) & Vector256.Create((short)1)) * 2 - Vector256.Create((short)1);

    /// <summary><see cref="Tables"/> with the 8 computed entries of a group in one Vector256: the same f32 operations in the same order.</summary>
    private static void TablesVector256(float* x, int groups, float s, sbyte* tables)
    {
        var inverse = Vector256.Create(s == 0 ? 0f : 1f / s);
        var sign0 = Vector256.Create(-1f, 1, -1, 1, -1, 1, -1, 1);
        var sign1 = Vector256.Create(-1f, -1, 1, 1, -1, -1, 1, 1);
        var sign2 = Vector256.Create(-1f, -1, -1, -1, 1, 1, 1, 1);
        var low = Vector256.Create(-127);
        var high = Vector256.Create(127);
        var main = stackalloc int[8];
        var residual = stackalloc int[8];
        for (var g = 0; g < groups; g++, x += 4, tables += 32)
        {
            var v = (Vector256.Create(x[0]) * sign0 + Vector256.Create(x[1]) * sign1 + Vector256.Create(x[2]) * sign2 - Vector256.Create(x[3])) * inverse;
            var m = Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(v)), low), high);
            var r = Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round((v - Vector256.ConvertToSingle(m)) * ResidualSteps)), low), high);
            m.Store(main);
            r.Store(residual);
            for (var p = 0; p < 8; p++)
            {
                tables[p] = (sbyte)main[p];
                tables[15 - p] = (sbyte)-main[p];
                tables[16 + p] = (sbyte)residual[p];
                tables[31 - p] = (sbyte)-residual[p];
            }
        }
    }

    /// <summary>s = max over the <paramref name="groups"/> groups of 4 of Σ|xₜ|, / 127.</summary>
    private static float Scale(float* x, int groups)
    {
        var max = 0f;
        for (var g = 0; g < groups; g++, x += 4)
            max = MathF.Max(max, MathF.Abs(x[0]) + MathF.Abs(x[1]) + MathF.Abs(x[2]) + MathF.Abs(x[3]));
        return max / 127f;
    }

    /// <summary>
    /// Per group: the main table T[p] = round(v_p / s), v_p = Σₜ ±xₜ, and the residual table
    /// R[p] = round((v_p / s − T[p])·254), both odd (T[15 − p] = −T[p]: mirror symmetry, 8 entries computed).
    /// </summary>
    private static void Tables(float* x, int groups, float s, sbyte* tables)
    {
        var inverse = s == 0 ? 0f : 1f / s;
        for (var g = 0; g < groups; g++, x += 4, tables += 32)
        {
            for (var p = 0; p < 8; p++)
            {
                var v = (((p & 1) != 0 ? x[0] : -x[0]) + ((p & 2) != 0 ? x[1] : -x[1]) + ((p & 4) != 0 ? x[2] : -x[2]) - x[3]) * inverse;
                var main = Math.Clamp((int)MathF.Round(v), -127, 127);
                var residual = Math.Clamp((int)MathF.Round((v - main) * ResidualSteps), -127, 127);
                tables[p] = (sbyte)main;
                tables[15 - p] = (sbyte)-main;
                tables[16 + p] = (sbyte)residual;
                tables[31 - p] = (sbyte)-residual;
            }
        }
    }
}

/// <summary>The load-time permutation from GGUF blocks into the bit-serial layout (see <see cref="BitSerialLutMatVec"/>).</summary>
internal static unsafe class BitSerialLutLayout
{
    public static bool TryRepack(GgmlType type, byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        var info = QuantTypes.Get(type);
        if (n <= 0 || n % info.BlockSize != 0 || rowBytes != info.RowBytes(n) || rows <= 0)
            return false;
        var blocks = n / (int)info.BlockSize;
        var blockBytes = (int)info.BlockBytes;
        if (!ScalesAreFinite(type, source, rows, blocks, blockBytes))
            return false;
        var tileRows = BitSerialLutMatVec.TileRows(type);
        var codes = new int[info.BlockSize];
        for (var first = 0; first < rows; first += tileRows)
        {
            var h = Math.Min(tileRows, rows - first);
            var tile = destination + first * rowBytes;
            for (var r = 0; r < h; r++)
            {
                var chunk = r / BitSerialLutMatVec.ChunkRows;
                var row = r % BitSerialLutMatVec.ChunkRows;
                var hc = Math.Min(BitSerialLutMatVec.ChunkRows, h - chunk * BitSerialLutMatVec.ChunkRows);
                var src = source + (first + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = src + b * blockBytes;
                    var dst = tile + (long)b * h * blockBytes + chunk * BitSerialLutMatVec.ChunkRows * blockBytes;
                    if (type == GgmlType.Q2_K)
                        PutQ2_K(block, codes, dst, row, hc);
                    else
                        PutQ4(type, block, codes, dst, row, hc);
                }
            }
        }
        return true;
    }

    private static bool ScalesAreFinite(GgmlType type, byte* source, int rows, int blocks, int blockBytes)
    {
        // Offsets of the f16 fields in one GGUF block: Q4_0 d; Q4_1 d, m; Q2_K d, dmin.
        ReadOnlySpan<int> offsets = type switch
        {
            GgmlType.Q4_0 => [0],
            GgmlType.Q4_1 => [0, 2],
            _ => [80, 82],
        };
        for (long b = 0; b < (long)rows * blocks; b++)
            foreach (var offset in offsets)
                if ((*(ushort*)(source + b * blockBytes + offset) & 0x7C00) == 0x7C00)
                    return false;
        return true;
    }

    /// <summary>4-bit index of plane <paramref name="plane"/> over codes[first..first+4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(int[] codes, int first, int plane) =>
        ((codes[first] >> plane) & 1) | (((codes[first + 1] >> plane) & 1) << 1)
        | (((codes[first + 2] >> plane) & 1) << 2) | (((codes[first + 3] >> plane) & 1) << 3);

    private static void PutQ4(GgmlType type, byte* block, int[] codes, byte* dst, int row, int hc)
    {
        var qs = block + (type == GgmlType.Q4_0 ? 2 : 4);
        for (var i = 0; i < 16; i++)
        {
            codes[i] = qs[i] & 0x0F;
            codes[i + 16] = qs[i] >> 4;
        }
        for (var j = 0; j < 8; j++)
        {
            dst[j * 2 * hc + 2 * row] = (byte)(Index(codes, 4 * j, 0) | (Index(codes, 4 * j, 2) << 4));
            dst[j * 2 * hc + 2 * row + 1] = (byte)(Index(codes, 4 * j, 1) | (Index(codes, 4 * j, 3) << 4));
        }
        ((ushort*)(dst + 16 * hc))[row] = *(ushort*)block;
        if (type == GgmlType.Q4_1)
            ((ushort*)(dst + 18 * hc))[row] = *(ushort*)(block + 2);
    }

    private static void PutQ2_K(byte* block, int[] codes, byte* dst, int row, int hc)
    {
        // GGUF Q2_K: scales[16], qs[64], d, dmin; element e = 128h + 32j + l has code qs[32h + l] >> 2j.
        var qs = block + 16;
        for (var e = 0; e < 256; e++)
            codes[e] = (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        for (var p = 0; p < 8; p++)
        {
            var pair = dst + p * 10 * hc;
            for (var v = 0; v < 4; v++)
            {
                var first = 32 * p + 8 * v;
                pair[v * 2 * hc + 2 * row] = (byte)(Index(codes, first, 0) | (Index(codes, first + 4, 0) << 4));
                pair[v * 2 * hc + 2 * row + 1] = (byte)(Index(codes, first, 1) | (Index(codes, first + 4, 1) << 4));
            }
            pair[8 * hc + row] = block[2 * p];
            pair[9 * hc + row] = block[2 * p + 1];
        }
        var position = BitSerialLutMatVec.Q2_KScalePosition(row, hc);
        ((ushort*)(dst + 80 * hc))[position] = *(ushort*)(block + 80);
        ((ushort*)(dst + 82 * hc))[position] = *(ushort*)(block + 82);
    }
}

/// <summary>The scalar form of the kernel over the repacked layout (int tables, int sums, the variants' f32 order).</summary>
internal static unsafe class BitSerialLutReference
{
    /// <summary>y for the rows of chunk <paramref name="chunk"/> of the tile of <paramref name="h"/> rows at <paramref name="tile"/>.</summary>
    public static void Chunk(GgmlType type, byte* tile, int h, int chunk, byte* sidecar, int n, float* y)
    {
        var hc = Math.Min(BitSerialLutMatVec.ChunkRows, h - chunk * BitSerialLutMatVec.ChunkRows);
        var blockBytes = (int)QuantTypes.Get(type).BlockBytes;
        var start = tile + chunk * BitSerialLutMatVec.ChunkRows * blockBytes;
        long blockStride = (long)h * blockBytes;
        for (var r = 0; r < hc; r++)
            y[r] = type == GgmlType.Q2_K ? RowQ2_K(start, blockStride, hc, r, sidecar, n) : RowQ4(type, start, blockStride, hc, r, sidecar, n);
    }

    private static float RowQ4(GgmlType type, byte* w, long blockStride, int hc, int r, byte* sidecar, int n)
    {
        var y = 0f;
        for (var b = 0; b < n / 32; b++, w += blockStride, sidecar += BitSerialLutMatVec.Q4Record)
        {
            var tables = (sbyte*)sidecar;
            int sum = 0, residual = 0;
            for (var j = 0; j < 8; j++, tables += 32)
            {
                var b0 = w[j * 2 * hc + 2 * r];
                var b1 = w[j * 2 * hc + 2 * r + 1];
                sum += tables[b0 & 15] + 2 * tables[b1 & 15] + 4 * tables[b0 >> 4] + 8 * tables[b1 >> 4];
                residual += 4 * tables[16 + (b0 >> 4)] + 8 * tables[16 + (b1 >> 4)];
            }
            var f = (float*)(sidecar + 256);
            var d = HalfLookup.ToSingle(w + 16 * hc + 2 * r);
            var block = MathF.FusedMultiplyAdd(residual, f[3], MathF.FusedMultiplyAdd(sum, f[0], f[1]));
            y = MathF.FusedMultiplyAdd(block, d, y);
            if (type == GgmlType.Q4_1)
                y = MathF.FusedMultiplyAdd(HalfLookup.ToSingle(w + 18 * hc + 2 * r), f[2], y);
        }
        return y;
    }

    private static float RowQ2_K(byte* w, long blockStride, int hc, int r, byte* sidecar, int n)
    {
        var y = 0f;
        for (var b = 0; b < n / 256; b++, w += blockStride, sidecar += BitSerialLutMatVec.Q2_KSuperBlockRecord)
        {
            int e = 0, c = 0;
            for (var p = 0; p < 8; p++)
            {
                var pair = w + p * 10 * hc;
                var record = sidecar + p * BitSerialLutMatVec.Q2_KPairRecord;
                var tables = (sbyte*)record;
                var sums = (short*)(record + 256);
                var sa = pair[8 * hc + r];
                var sb = pair[9 * hc + r];
                int la = 0, lb = 0;
                for (var v = 0; v < 4; v++)
                {
                    var t0 = tables + 64 * v;
                    var t1 = t0 + 32;
                    var b0 = pair[v * 2 * hc + 2 * r];
                    var b1 = pair[v * 2 * hc + 2 * r + 1];
                    var main = t0[b0 & 15] + 2 * t0[b1 & 15] + t1[b0 >> 4] + 2 * t1[b1 >> 4];
                    var low = t0[16 + (b0 & 15)] + 2 * t0[16 + (b1 & 15)] + t1[16 + (b0 >> 4)] + 2 * t1[16 + (b1 >> 4)];
                    var l = 4 * main + low;
                    if (v < 2)
                        la += l;
                    else
                        lb += l;
                }
                e += (sa & 15) * (la + sums[0]) + (sb & 15) * (lb + sums[1]);
                c += (sa >> 4) * sums[2] + (sb >> 4) * sums[3];
            }
            var position = BitSerialLutMatVec.Q2_KScalePosition(r, hc);
            var d = HalfLookup.ToSingle(w + 80 * hc + 2 * position);
            var dmin = HalfLookup.ToSingle(w + 82 * hc + 2 * position);
            var f = (float*)(sidecar + 8 * BitSerialLutMatVec.Q2_KPairRecord);
            y = MathF.FusedMultiplyAdd(e * f[0], d, y);
            y = MathF.FusedMultiplyAdd(-(c * f[1]), dmin, y);
        }
        return y;
    }
}
