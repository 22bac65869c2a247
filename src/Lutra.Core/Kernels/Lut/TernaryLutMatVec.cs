using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// Exact lookup-table GEMV for ternary weights (TQ1_0, TQ2_0) · Q8_K activations on AVX-512 VBMI
/// (lut-kernels.md §1.8, "5-trit LUT"). No weight is ever multiplied: every 5 trits of a row are one byte, and
/// that byte indexes a table of the 122 possible partial sums Σ vⱼ·aⱼ of those 5 activations.
/// <para>
/// Weight layout (written once by <see cref="TryPrepareWeights"/>): a super-block of 256 trits is cut into 51
/// groups of 5 consecutive elements plus a last group for element 255. A group with trit values vⱼ ∈ {−1,0,1}
/// has balanced value B = Σ vⱼ·3ʲ ∈ [−121, 121]; its byte is B when B &gt; 0, else 0x80 | −B (the trits negated
/// give −B, and the table is odd: T[−B] = −T[B]). A row block with more than 25 positive groups is stored
/// negated, scale included, and the last group's byte also carries that count (<see cref="LastIndex"/>). Rows
/// are interleaved in tiles of <see cref="RowTile"/> = 512 rows (one 256-row tile after the last whole one if
/// 256 rows are left): per super-block, 52 groups × tile-width row bytes, then the rows' f16 scales — 54 bytes
/// per row and super-block, which is TQ1_0's own size and fits in TQ2_0's 66 (the rest of a TQ2_0 tile is
/// unused, so a TQ2_0 matrix streams 18 % fewer bytes than its GGUF size). Rows after the last tile keep the
/// GGUF layout and go through the multiply-add row dot.
/// </para>
/// <para>
/// Activation sidecar (built once per input vector, shared by every row, thread and projection): per group,
/// the int16 table T[0..122) (zero to 128) split into a 128-byte low-byte plane and a 128-byte high-byte
/// plane, so that one <c>vpermi2b</c> per plane looks up 64 rows at once.
/// </para>
/// </summary>
public abstract unsafe class TernaryLutMatVecAvx512 : MatVecKernel
{
    private const int SuperBlock = 256;
    private const int Q8_KBytes = 292;
    private const int Q8_KQs = 4;

    /// <summary>Groups per super-block: 51 of five trits, one of a single trit.</summary>
    private const int Groups = 52;
    private const int TableBytes = 256;
    private const int RowsPerVector = 64;
    private const int WideRows = 512;
    private const int NarrowRows = 256;
    /// <summary>Bytes per row and super-block in the repacked layout: 52 indices and an f16 scale.</summary>
    private const int RepackedBlockBytes = Groups + 2;
    // Software prefetch of every weight line twice: into L2 8 KiB ahead (16 groups of a 512-row tile), then into L1
    // 2 KiB ahead (InterleavedSteps.PrefetchTwoStage). The table reads from L2 interleave with the stream, and with the hardware prefetcher alone the
    // kernel read well below the probe (Zen 5: 17-20 vs 21-24 GB/s for TQ1_0). One prefetcht0 6 KiB ahead held an
    // L1 miss buffer per line for a whole memory latency; on the Intel host that capped the stream at 11-12.7 GB/s
    // (256 MiB streamed, 2048 columns), t1 alone read 11-12, none 9; with the L2 stage first the L1 misses wait for
    // L2 only: 13.5-14.3 GB/s against a 14-15 probe. Inside llama-1b decode, both versions alternated in one process:
    // +3-8 % per weight shape. See docs/kernels.md, item 16.
    private const int PrefetchToL2 = 8192;
    /// <summary>Most positive five-trit groups a stored row block has: a block with more is stored negated.</summary>
    private const int MaxPositiveGroups = 25;
    /// <summary>Last-table entry a₂₅₅ + 0; entries LastSigned + j hold a₂₅₅ + j for j ∈ [−26, 25].</summary>
    private const int LastSigned = 90;

    private readonly delegate*<byte*, byte*, int, float> _rowDot;
    private readonly int _weightBlockBytes;

    private protected TernaryLutMatVecAvx512(GgmlType weightType, delegate*<byte*, byte*, int, float> rowDot)
        : base(weightType, InstructionSet.Avx512, "AVX-512 VBMI exact 5-trit LUT")
    {
        _rowDot = rowDot;
        _weightBlockBytes = (int)QuantTypes.Get(weightType).BlockBytes;
    }

    /// <summary>The tables need <c>vpermi2b</c> (AVX-512 VBMI) on top of AVX-512 BW.</summary>
    public static bool IsSupported => Avx512Vbmi.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated;

    public override bool RepacksWeights => true;

    public override bool UsesLookupTables => true;

    public override int RowTile => WideRows;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + n / SuperBlock * Groups * TableBytes;

    /// <summary>The trits t ∈ {0,1,2} (value t − 1) of one GGUF block, in element order; false if a code is not ternary.</summary>
    private protected abstract bool Unpack(byte* block, byte* trits);

    /// <summary>Byte offset of the f16 scale in one GGUF block.</summary>
    private protected abstract int ScaleOffset { get; }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_KKernels.QuantizeRowAvx512(x, state, n);
        var tables = state + AlignUp(StandardActivationBytes(n));
        var digits = (short*)Unsafe.AsPointer(ref PartDigits[0]);
        var d0 = Vector512.Load(digits);
        var d1 = Vector512.Load(digits + 32);
        var d2 = Vector512.Load(digits + 64);
        var d3 = Vector512.Load(digits + 96);
        var d4 = Vector512.Load(digits + 128);
        var parts = (short*)Unsafe.AsPointer(ref PartIndex[0]);
        var low0 = Vector512.Load(parts);
        var low1 = Vector512.Load(parts + 32);
        var low2 = Vector512.Load(parts + 64);
        var low3 = Vector512.Load(parts + 96);
        var high0 = Vector512.Load(parts + 128);
        var high1 = Vector512.Load(parts + 160);
        var high2 = Vector512.Load(parts + 192);
        var high3 = Vector512.Load(parts + 224);
        var planes = (byte*)Unsafe.AsPointer(ref PlaneIndex[0]);
        var evenBytes = Vector512.Load(planes);
        var oddBytes = Vector512.Load(planes + 64);
        for (var b = 0; b < n / SuperBlock; b++)
        {
            var q = (sbyte*)(state + b * Q8_KBytes + Q8_KQs);
            for (var g = 0; g < Groups - 1; g++, tables += TableBytes)
            {
                // T[B] = L[lo] + H[hi] for code B + 121 = lo + 27·hi: the 27 sums over trits 0-2 and the 5 sums over
                // trits 3-4 that occur (hi = 4..8) share one vector, and two vpermw per 32 entries add them up.
                var a = q + 5 * g;
                var parts32 = d0 * Vector512.Create((short)a[0]) + d1 * Vector512.Create((short)a[1]) + d2 * Vector512.Create((short)a[2])
                    + d3 * Vector512.Create((short)a[3]) + d4 * Vector512.Create((short)a[4]);
                var t0 = Avx512BW.PermuteVar32x16(parts32, low0) + Avx512BW.PermuteVar32x16(parts32, high0);
                var t1 = Avx512BW.PermuteVar32x16(parts32, low1) + Avx512BW.PermuteVar32x16(parts32, high1);
                var t2 = Avx512BW.PermuteVar32x16(parts32, low2) + Avx512BW.PermuteVar32x16(parts32, high2);
                var t3 = Avx512BW.PermuteVar32x16(parts32, low3) + Avx512BW.PermuteVar32x16(parts32, high3);
                StorePlanes(t0, t1, t2, t3, evenBytes, oddBytes, tables);
            }
            BuildLastTable(q[SuperBlock - 1], evenBytes, oddBytes, tables);
            tables += TableBytes;
        }
    }

    /// <summary>
    /// The last group's table: element 255's product plus the row block's count c ≤ 25 of positive five-trit groups (see
    /// <see cref="LastIndex"/>): T[e] = e for e &lt; 26 (trit 0), T[e] = a₂₅₅ + e − 90 for 64 ≤ e &lt; 116 (trit ±1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BuildLastTable(sbyte a255, Vector512<byte> evenBytes, Vector512<byte> oddBytes, byte* table)
    {
        var a = Vector512.Create((short)a255);
        var bases = (short*)Unsafe.AsPointer(ref LastBase[0]);
        var uses = (short*)Unsafe.AsPointer(ref LastUses[0]);
        StorePlanes(Vector512.Load(bases) + Vector512.Load(uses) * a, Vector512.Load(bases + 32) + Vector512.Load(uses + 32) * a,
            Vector512.Load(bases + 64) + Vector512.Load(uses + 64) * a, Vector512.Load(bases + 96) + Vector512.Load(uses + 96) * a,
            evenBytes, oddBytes, table);
    }

    /// <summary>The 128 int16 entries t0..t3 as a 128-byte low-byte plane and a 128-byte high-byte plane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePlanes(Vector512<short> t0, Vector512<short> t1, Vector512<short> t2, Vector512<short> t3,
        Vector512<byte> evenBytes, Vector512<byte> oddBytes, byte* table)
    {
        Avx512Vbmi.PermuteVar64x8x2(t0.AsByte(), evenBytes, t1.AsByte()).Store(table);
        Avx512Vbmi.PermuteVar64x8x2(t2.AsByte(), evenBytes, t3.AsByte()).Store(table + 64);
        Avx512Vbmi.PermuteVar64x8x2(t0.AsByte(), oddBytes, t1.AsByte()).Store(table + 128);
        Avx512Vbmi.PermuteVar64x8x2(t2.AsByte(), oddBytes, t3.AsByte()).Store(table + 192);
    }

    private static readonly byte[] AllOnes = Enumerable.Repeat((byte)0xFF, 64).ToArray();

    // The last group's table as LastBase[e] + LastUses[e]·a₂₅₅.
    private static readonly short[] LastBase = BuildLast(uses: false);
    private static readonly short[] LastUses = BuildLast(uses: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static short[] BuildLast(bool uses)
    {
        var table = new short[128];
        for (var e = 0; e < 128; e++)
        {
            if (e <= MaxPositiveGroups)
                table[e] = uses ? (short)0 : (short)e;
            else if (e >= LastSigned - MaxPositiveGroups - 1 && e <= LastSigned + MaxPositiveGroups)
                table[e] = uses ? (short)1 : (short)(e - LastSigned);
        }
        return table;
    }

    /// <summary>Lane of the partial-sum vector where L[lo] (lo = 0..26) and H[hi] (hi = 4..8) sit.</summary>
    private const int HighLanes = 27;

    /// <summary>
    /// Digit j ∈ {−1, 0, 1} that multiplies aⱼ in each lane of the partial-sum vector: lanes 0-26 hold
    /// L[lo] = Σⱼ₌₀..₂ (digitⱼ(lo) − 1)·aⱼ, lanes 27-31 hold H[hi] = Σⱼ₌₃..₄ (digitⱼ₋₃(hi) − 1)·aⱼ for hi = 4..8.
    /// </summary>
    private static readonly short[] PartDigits = BuildPartDigits();

    // vpermw indices per table entry B: its lo lane (first 128) and its hi lane (next 128). Entries B ≥ 122 take
    // lo = 13 and hi = 4, the all-zero-trit sums, so they are 0.
    private static readonly short[] PartIndex = BuildPartIndex();

    // vpermi2b indices that pick the low (even) and the high (odd) bytes of 64 int16 lanes across two vectors.
    private static readonly byte[] PlaneIndex = [.. Enumerable.Range(0, 64).Select(i => (byte)(2 * i)), .. Enumerable.Range(0, 64).Select(i => (byte)(2 * i + 1))];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static short[] BuildPartDigits()
    {
        var digits = new short[5 * 32];
        for (var lane = 0; lane < 32; lane++)
        {
            if (lane < HighLanes)
            {
                for (int j = 0, code = lane; j < 3; j++, code /= 3)
                    digits[32 * j + lane] = (short)(code % 3 - 1);
            }
            else
            {
                for (int j = 3, code = lane - HighLanes + 4; j < 5; j++, code /= 3)
                    digits[32 * j + lane] = (short)(code % 3 - 1);
            }
        }
        return digits;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static short[] BuildPartIndex()
    {
        var index = new short[2 * 128];
        for (var entry = 0; entry < 128; entry++)
        {
            var code = entry < 122 ? entry + 121 : 13 + 27 * 4; // Σ (vⱼ + 1)·3ʲ: plain base-3 digits tⱼ = vⱼ + 1
            index[entry] = (short)(code % 27);
            index[128 + entry] = (short)(HighLanes + code / 27 - 4);
        }
        return index;
    }

    /// <summary>
    /// Byte position inside a 64-row index vector of row r (0..63) of that vector. The low/high unpack of the
    /// two byte planes yields int16 lanes in the order [lane bytes 0-7 | lane bytes 8-15] per 128-bit lane;
    /// placing rows this way makes the four widened float vectors hold rows 0-15, 16-31, 32-47, 48-63.
    /// </summary>
    private static int BytePosition(int row) => 16 * (row % 32 / 8) + 8 * (row / 32) + row % 8;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * _weightBlockBytes)
            return false;
        var blocks = n / SuperBlock;
        var trits = stackalloc byte[SuperBlock];
        var values = stackalloc int[Groups - 1];
        var start = 0;
        for (int tileRows; (tileRows = TileRowsAt(rows - start)) != 0; start += tileRows)
        {
            var dst = destination + start * rowBytes;
            new Span<byte>(dst, (int)(tileRows * rowBytes)).Clear();
            for (var r = 0; r < tileRows; r++)
            {
                var position = r / RowsPerVector * RowsPerVector + BytePosition(r % RowsPerVector);
                var row = source + (start + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * _weightBlockBytes;
                    var scale = *(ushort*)(block + ScaleOffset);
                    if ((scale & 0x7C00) == 0x7C00 || !Unpack(block, trits))
                        return false; // Inf/NaN scales and the 2-bit code 3 have no place in this layout.
                    var dstBlock = dst + (long)b * tileRows * RepackedBlockBytes;
                    int positive = 0, nonzero = 0;
                    for (var g = 0; g < Groups - 1; g++)
                    {
                        values[g] = Balanced(trits, 5 * g);
                        positive += values[g] > 0 ? 1 : 0;
                        nonzero += values[g] != 0 ? 1 : 0;
                    }
                    // Negating every trit and the scale leaves the block's product unchanged (both are exact), and
                    // bounds the positive groups by 25, the range the last table covers.
                    var flip = 2 * positive > nonzero;
                    var sign = flip ? -1 : 1;
                    for (var g = 0; g < Groups - 1; g++)
                        dstBlock[g * tileRows + position] = Index(sign * values[g]);
                    var last = sign * (trits[SuperBlock - 1] - 1);
                    dstBlock[(Groups - 1) * tileRows + position] = LastIndex(last, flip ? nonzero - positive : positive);
                    // The kernel sums −Σ tⱼ·aⱼ: the stored scale is negated once more.
                    ((ushort*)(dstBlock + Groups * tileRows))[r] = (ushort)(flip ? scale : scale ^ 0x8000);
                }
            }
        }
        var tail = start * rowBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    /// <summary>Rows of the next tile when <paramref name="remaining"/> rows are left: 512, else 256, else none.</summary>
    private static int TileRowsAt(int remaining) => remaining >= WideRows ? WideRows : remaining >= NarrowRows ? NarrowRows : 0;

    /// <summary>Σⱼ (tⱼ − 1)·3ʲ over the five trits from <paramref name="first"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Balanced(byte* trits, int first)
    {
        var t = trits + first;
        return t[0] + 3 * t[1] + 9 * t[2] + 27 * t[3] + 81 * t[4] - 121;
    }

    /// <summary>A positive B is stored as B, zero and negative ones as 0x80 | −B (see <see cref="Tile{TWidth}"/>).</summary>
    private static byte Index(int value) => value > 0 ? (byte)value : (byte)(0x80 | -value);

    /// <summary>
    /// The last group's byte, which also cancels the −1 of the row block's <paramref name="positive"/> complemented
    /// lookups (c ≤ 25): trit 0 → 0x80 | c (entry c: +c); trit −1 → 0x80 | (90 + c) (a₂₅₅ + c); trit +1 → entry
    /// 89 − c, complemented: ~(a₂₅₅ − c − 1) = c − a₂₅₅.
    /// </summary>
    private static byte LastIndex(int trit, int positive) => trit switch
    {
        0 => (byte)(0x80 | positive),
        > 0 => (byte)(LastSigned - 1 - positive),
        _ => (byte)(0x80 | (LastSigned + positive)),
    };

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var blocks = n / SuperBlock;
        var tables = state + AlignUp(StandardActivationBytes(n));
        var start = 0;
        for (; rows - start >= WideRows; start += WideRows)
            Tile<Wide>(weights + start * rowBytes, blocks, state, tables, y + start);
        if (rows - start >= NarrowRows)
        {
            Tile<Narrow>(weights + start * rowBytes, blocks, state, tables, y + start);
            start += NarrowRows;
        }
        for (var r = start; r < rows; r++)
            y[r] = _rowDot(weights + r * rowBytes, state, n);
    }

    /// <summary>Tile widths as type arguments, so that each <see cref="Tile{TWidth}"/> is compiled for its width.</summary>
    private interface ITileWidth;

    private struct Wide : ITileWidth;

    private struct Narrow : ITileWidth;

    /// <summary>
    /// 512 (or 256) rows: per super-block, 52 table lookups per row accumulate in int16. The int16 sums wrap modulo 2¹⁶,
    /// so only the final per-super-block sum must fit: |Σ vⱼ·aⱼ| ≤ 256·127 = 32512 &lt; 32768 (Q8_K values are in
    /// [−127, 127]). The sign is applied backwards, as it costs one <c>vpshufb</c>: a byte with bit 7 clear (B &gt; 0)
    /// takes the one's complement ~T[B] = −T[B] − 1 of both planes, a byte with bit 7 set takes T[|B|] = −T[B]
    /// as is. So the sum is −Σ vⱼ·aⱼ − (positive lookups); the last group's entry adds that count back
    /// (<see cref="LastIndex"/>), and the stored scale is negated.
    /// Then sum · (d_w·d_a) joins the f32 row sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TWidth>(byte* w, int blocks, byte* state, byte* tables, float* y) where TWidth : struct, ITileWidth
    {
        var wide = typeof(TWidth) == typeof(Wide);
        var tileRows = wide ? WideRows : NarrowRows;
        for (var i = 0; i < tileRows; i += 16)
            Vector512<float>.Zero.Store(y + i);
        // Loaded, not a constant: the JIT would rematerialize a constant before every use with a vpternlogd that
        // depends on the register's previous value, chaining the lookups into one dependency chain.
        var ones = Vector512.Load((byte*)Unsafe.AsPointer(ref AllOnes[0]));
        for (var b = 0; b < blocks; b++, w += tileRows * RepackedBlockBytes, tables += Groups * TableBytes)
        {
            Vector512<short> low0 = default, high0 = default, low1 = default, high1 = default;
            Vector512<short> low2 = default, high2 = default, low3 = default, high3 = default;
            Vector512<short> low4 = default, high4 = default, low5 = default, high5 = default;
            Vector512<short> low6 = default, high6 = default, low7 = default, high7 = default;
            var t = tables;
            var idx = w;
            for (var g = 0; g < Groups; g++, t += TableBytes, idx += tileRows)
            {
                PrefetchLines(idx);
                var loA = Vector512.Load(t);
                var loB = Vector512.Load(t + 64);
                var hiA = Vector512.Load(t + 128);
                var hiB = Vector512.Load(t + 192);
                Lookup(ones, Vector512.Load(idx), loA, loB, hiA, hiB, ref low0, ref high0);
                Lookup(ones, Vector512.Load(idx + 64), loA, loB, hiA, hiB, ref low1, ref high1);
                Lookup(ones, Vector512.Load(idx + 128), loA, loB, hiA, hiB, ref low2, ref high2);
                Lookup(ones, Vector512.Load(idx + 192), loA, loB, hiA, hiB, ref low3, ref high3);
                if (wide)
                {
                    PrefetchLines(idx + 256);
                    Lookup(ones, Vector512.Load(idx + 256), loA, loB, hiA, hiB, ref low4, ref high4);
                    Lookup(ones, Vector512.Load(idx + 320), loA, loB, hiA, hiB, ref low5, ref high5);
                    Lookup(ones, Vector512.Load(idx + 384), loA, loB, hiA, hiB, ref low6, ref high6);
                    Lookup(ones, Vector512.Load(idx + 448), loA, loB, hiA, hiB, ref low7, ref high7);
                }
            }
            var da = Vector512.Create(*(float*)(state + b * Q8_KBytes));
            var scales = (ushort*)(w + Groups * tileRows);
            Flush(low0, high0, scales, da, y);
            Flush(low1, high1, scales + 64, da, y + 64);
            Flush(low2, high2, scales + 128, da, y + 128);
            Flush(low3, high3, scales + 192, da, y + 192);
            if (wide)
            {
                Flush(low4, high4, scales + 256, da, y + 256);
                Flush(low5, high5, scales + 320, da, y + 320);
                Flush(low6, high6, scales + 384, da, y + 384);
                Flush(low7, high7, scales + 448, da, y + 448);
            }
        }
    }

    /// <summary>The four weight lines from <paramref name="position"/>, into L2 far ahead and into L1 near.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchLines(byte* position)
    {
        var ahead = position + PrefetchToL2;
        InterleavedSteps.PrefetchTwoStage(ahead, PrefetchToL2);
        InterleavedSteps.PrefetchTwoStage(ahead + 64, PrefetchToL2);
        InterleavedSteps.PrefetchTwoStage(ahead + 128, PrefetchToL2);
        InterleavedSteps.PrefetchTwoStage(ahead + 192, PrefetchToL2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lookup(Vector512<byte> ones, Vector512<byte> idx, Vector512<byte> loA, Vector512<byte> loB, Vector512<byte> hiA, Vector512<byte> hiB,
        ref Vector512<short> low, ref Vector512<short> high)
    {
        // vpshufb yields zero where bit 7 is set: all ones exactly for the positive indices.
        var positive = Avx512BW.Shuffle(ones, idx);
        var lo = Avx512Vbmi.PermuteVar64x8x2(loA, idx, loB) ^ positive;
        var hi = Avx512Vbmi.PermuteVar64x8x2(hiA, idx, hiB) ^ positive;
        low += Avx512BW.UnpackLow(lo, hi).AsInt16();
        high += Avx512BW.UnpackHigh(lo, hi).AsInt16();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Flush(Vector512<short> low, Vector512<short> high, ushort* scales, Vector512<float> da, float* y)
    {
        Accumulate(low.GetLower(), scales, da, y);
        Accumulate(low.GetUpper(), scales + 16, da, y + 16);
        Accumulate(high.GetLower(), scales + 32, da, y + 32);
        Accumulate(high.GetUpper(), scales + 48, da, y + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(Vector256<short> sums, ushort* scales, Vector512<float> da, float* y)
    {
        var dw = HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)scales)));
        var value = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(sums));
        Avx512F.FusedMultiplyAdd(value, dw * da, Vector512.Load(y)).Store(y);
    }

    /// <summary>
    /// Exact f16 → f32 for finite values (zero and subnormals included), from the sign-extended f16 bits: shifted
    /// left by 13, the sign lands in the f32 sign bit and exponent/mantissa in the f32 fields (three copies of
    /// the sign in between are cleared), which is the value scaled by 2⁻¹¹²; one multiply by 2¹¹² restores it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToSingle(Vector512<int> half)
        => (Vector512.ShiftLeft(half, 13) & Vector512.Create(unchecked((int)0x8FFF_E000))).AsSingle() * Vector512.Create(0x7780_0000).AsSingle();
}

/// <summary>TQ1_0 through the exact 5-trit LUT; rows after the last 256-row tile use the multiply-add row dot.</summary>
public sealed unsafe class TQ1_0LutMatVecAvx512() : TernaryLutMatVecAvx512(GgmlType.TQ1_0, &Q8_KKernels.DotTQ1_0Avx512)
{
    private protected override int ScaleOffset => 52;

    private protected override bool Unpack(byte* block, byte* trits)
    {
        TQ1_0Reference.Unpack(block, trits);
        return true;
    }
}

/// <summary>
/// TQ2_0 through the exact 5-trit LUT (its 2-bit codes repacked to 1.69 bits); rows after the last 256-row tile
/// use the multiply-add row dot. A matrix containing the code 3 (value +2, which the quantizer never writes)
/// is refused by <see cref="MatVecKernel.TryPrepareWeights"/>.
/// </summary>
public sealed unsafe class TQ2_0LutMatVecAvx512() : TernaryLutMatVecAvx512(GgmlType.TQ2_0, &Q8_KKernels.DotTQ2_0Avx512)
{
    private protected override int ScaleOffset => 64;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override bool Unpack(byte* block, byte* trits)
    {
        for (var e = 0; e < 256; e++)
        {
            var code = (block[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
            if (code == 3)
                return false;
            trits[e] = (byte)code;
        }
        return true;
    }
}
