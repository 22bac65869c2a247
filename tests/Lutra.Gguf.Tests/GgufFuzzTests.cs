using System.Buffers.Binary;
using System.Diagnostics;
using Lutra.Core.Quants;
using Lutra.Tests;

namespace Lutra.Gguf.Tests;

/// <summary>
/// Seeded fuzzing of the reader: mutants of real GGUF files must either open (and then every metadata
/// value and tensor span is usable) or fail with <see cref="GgufFormatException"/>; nothing may hang or
/// allocate more than a small multiple of the mutant's size. LUTRA_FUZZ_CASES sets the case count
/// (default 2,000), LUTRA_FUZZ_SEED the seed.
/// </summary>
public class GgufFuzzTests(ITestOutputHelper output)
{
    private const int DefaultCases = 2000;
    private const int DefaultSeed = 20250220;
    private const long MaxSeedFileBytes = 2 << 20; // keeps a case cheap; every header shape is still covered
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Allocation allowed per byte of input. Every item the reader keeps costs a bounded amount of managed
    /// memory per byte that encodes it; the densest encodings (<see cref="Dense_headers_allocate_a_bounded_multiple_of_their_size"/>)
    /// measure 13.0 bytes per byte for minimal KV records (a 19-byte record becomes a key string, a
    /// GgufValue, a boxed scalar, dictionary and list slots with their growth copies), 9.5 for string
    /// values, 7.6 for tensor infos, 4.4 for arrays of 1-byte strings, 3.3 for nested arrays; everything
    /// else is less. 16 leaves headroom for runtime differences, while anything sized by a claimed count
    /// rather than by bytes present (2^40 tensors in a small file) would exceed it by orders of magnitude.
    /// </summary>
    internal const int AllocationPerByte = 16;

    /// <summary>Fixed cost per case: the exception with its message and stack trace, first-use buffers.</summary>
    internal const long AllocationSlack = 128 * 1024;

    private sealed record SeedFile(string Name, byte[] Bytes, GgufField[][] FieldsByKind, int HeaderLength);

    private static readonly Lazy<SeedFile[]> Seeds = new(LoadSeeds);

    private static SeedFile[] LoadSeeds()
    {
        var files = new List<(string, byte[])> { ("synthetic", SyntheticFile()) };
        if (SharedData.Directory is { } root)
        {
            foreach (var dir in new[] { "models", "tokenizer" })
            {
                foreach (var path in Directory.EnumerateFiles(Path.Combine(root, dir), "*.gguf").Order())
                {
                    if (new FileInfo(path).Length <= MaxSeedFileBytes)
                        files.Add((Path.GetFileName(path), File.ReadAllBytes(path)));
                }
            }
        }
        return files.Select(f =>
        {
            var (fields, headerLength) = GgufFieldMap.Walk(f.Item2);
            var byKind = Enum.GetValues<GgufFieldKind>().Select(k => fields.Where(x => x.Kind == k).ToArray()).ToArray();
            return new SeedFile(f.Item1, f.Item2, byKind, headerLength);
        }).ToArray();
    }

    /// <summary>A small file with every value type, nested arrays, a custom alignment and mixed tensor types.</summary>
    private static byte[] SyntheticFile()
    {
        var w = new GgufWriter();
        var md = w.Metadata;
        md.Set("general.architecture", GgufValue.From("llama"));
        md.Set(GgufFile.AlignmentKey, GgufValue.From(64u));
        md.Set("llama.block_count", GgufValue.From(2u));
        md.Set("i8", new GgufValue(GgufValueType.Int8, (sbyte)-1));
        md.Set("u16", new GgufValue(GgufValueType.UInt16, (ushort)7));
        md.Set("f64", GgufValue.From(1.5));
        md.Set("u64", GgufValue.From(ulong.MaxValue));
        md.Set("flag", GgufValue.From(true));
        md.Set("tokenizer.ggml.tokens", GgufValue.FromArray(["<unk>", "<s>", "</s>", "a", "b"]));
        md.Set("tokenizer.ggml.scores", GgufValue.FromArray([0f, 0f, 0f, -1f, -2f]));
        md.Set("tokenizer.ggml.token_type", GgufValue.FromArray([2, 3, 3, 1, 1]));
        md.Set("nested", new GgufValue(GgufValueType.Array, new[]
        {
            GgufValue.FromArray(["x", "yz"]),
            new GgufValue(GgufValueType.Array, new[] { GgufValue.FromArray([1.0f]) }, GgufValueType.Array),
        }, GgufValueType.Array));
        w.AddTensor("token_embd.weight", [32, 5], GgmlType.Q8_0, new byte[5 * 34]);
        w.AddTensor("blk.0.ffn_down.weight", [256, 2], GgmlType.Q4_K, new byte[2 * 144]);
        w.AddTensor("output_norm.weight", [32], GgmlType.F32, new byte[128]);
        w.AddTensor("blk.0.attn_q.weight", [32, 2, 1, 1], GgmlType.BF16, new byte[128]);
        var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }

    private static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out var v) && v > 0 ? v : fallback;

    [Fact]
    public void Mutants_of_real_files_open_or_fail_with_GgufFormatException_without_hanging_or_overallocating()
    {
        var cases = EnvInt("LUTRA_FUZZ_CASES", DefaultCases);
        var seed = EnvInt("LUTRA_FUZZ_SEED", DefaultSeed);
        var seeds = Seeds.Value;
        var stats = new FuzzStats();
        Exception? crash = null;
        long caseStarted = Stopwatch.GetTimestamp();
        var currentCase = -1;
        string? currentDescription = null;

        var worker = new Thread(() =>
        {
            try
            {
                using (var warmUp = GgufFile.FromBytes(seeds[0].Bytes))
                    Exercise(warmUp); // first-use allocations are not a case's
                for (var i = 0; i < cases; i++)
                {
                    var rng = new Random(unchecked(seed * 1_000_003 + i));
                    var source = seeds[i % seeds.Length];
                    var mutant = Mutate(source, rng, out var how);
                    Volatile.Write(ref currentDescription, $"case {i}: {how} of {source.Name}");
                    Interlocked.Exchange(ref caseStarted, Stopwatch.GetTimestamp());
                    Volatile.Write(ref currentCase, i);
                    RunCase(mutant, currentDescription!, stats);
                }
            }
            catch (Exception e)
            {
                crash = e;
            }
        })
        { IsBackground = true, Name = "gguf-fuzz" };

        var watch = Stopwatch.StartNew();
        worker.Start();
        while (!worker.Join(100))
        {
            if (Stopwatch.GetElapsedTime(Interlocked.Read(ref caseStarted)) > CaseTimeout && Volatile.Read(ref currentCase) >= 0)
                Assert.Fail($"{Volatile.Read(ref currentDescription)} has not finished after {CaseTimeout.TotalSeconds} s (hang?); seed {seed}");
        }
        Assert.Null(crash);
        output.WriteLine($"{cases} cases from {seeds.Length} seed files (seed {seed}) in {watch.Elapsed.TotalSeconds:F1} s: " +
            $"{stats.Accepted} opened, {stats.Rejected} rejected with GgufFormatException; " +
            $"peak allocation {stats.MaxShareOfBound:P0} of the bound ({AllocationPerByte} x mutant size + {AllocationSlack / 1024} KiB)");
        Assert.True(stats.Failures.Count == 0, string.Join("\n", stats.Failures.Take(20)));
        // The mutants must exercise both outcomes, or the fuzzer is not testing what it claims.
        Assert.True(stats.Accepted > 0 && stats.Rejected > 0, $"accepted {stats.Accepted}, rejected {stats.Rejected}");
    }

    private sealed class FuzzStats
    {
        public int Accepted;
        public int Rejected;
        public double MaxShareOfBound;
        public readonly List<string> Failures = [];
    }

    private static void RunCase(byte[] mutant, string description, FuzzStats stats)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            using var file = GgufFile.FromBytes(mutant);
            Exercise(file);
            stats.Accepted++;
        }
        catch (GgufFormatException e)
        {
            stats.Rejected++;
            if (e.Field is null || e.Offset < 0 || e.Offset > mutant.Length)
                stats.Failures.Add($"{description}: exception without a valid field/offset: {e.Message}");
        }
        catch (Exception e)
        {
            stats.Failures.Add($"{description}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        var bound = AllocationPerByte * (long)mutant.Length + AllocationSlack;
        stats.MaxShareOfBound = Math.Max(stats.MaxShareOfBound, (double)allocated / bound);
        if (allocated > bound)
            stats.Failures.Add($"{description}: allocated {allocated} bytes for a {mutant.Length}-byte file");
    }

    /// <summary>Reads every metadata value (also through its typed getter) and touches every tensor's bytes.</summary>
    internal static long Exercise(GgufFile f)
    {
        long sink = 0;
        var md = f.Metadata;
        foreach (var (key, value) in md)
        {
            sink += key.Length + Touch(value);
            sink += value.Type switch
            {
                GgufValueType.String => md.GetString(key)!.Length,
                GgufValueType.UInt32 => md.GetUInt32(key)!.Value,
                GgufValueType.Int32 => md.GetInt32(key)!.Value,
                GgufValueType.Float32 => (long)BitConverter.SingleToUInt32Bits(md.GetFloat32(key)!.Value),
                GgufValueType.Bool => md.GetBool(key)!.Value ? 1 : 0,
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16 or GgufValueType.Int16 or GgufValueType.Int64 =>
                    md.GetInteger(key)!.Value,
                GgufValueType.Array when value.ElementType == GgufValueType.String => md.GetArray<GgufString>(key)!.Length,
                GgufValueType.Array when value.ElementType == GgufValueType.Float32 => md.GetArray<float>(key)!.Length,
                GgufValueType.Array when value.ElementType == GgufValueType.Int32 => md.GetArray<int>(key)!.Length,
                _ => 0,
            };
        }
        // Plain checks rather than Assert calls: these run per tensor and must not dominate the allocation count.
        foreach (var t in f.Tensors)
        {
            var info = t.TypeInfo;
            if (!f.TryGetTensor(t.Name, out var same) || !ReferenceEquals(same, t)
                || t.DataOffset < f.DataStart || t.DataOffset > f.Length - t.ByteSize || t.DataOffset % f.Alignment != 0
                || t.ElementCount / info.BlockSize * info.BlockBytes != t.ByteSize || t.RowBytes * t.Rows != t.ByteSize)
                throw new InvalidOperationException($"accepted tensor '{t.Name}' breaks an invariant: {t} at {t.DataOffset}, {t.ByteSize} bytes");
            sink += t.Columns;
            if (t.ByteSize <= int.MaxValue)
            {
                var span = f.GetTensorData(t);
                if (!span.IsEmpty)
                    sink += span[0] + span[^1];
            }
        }
        return sink;
    }

    private static long Touch(GgufValue value) => value.Value switch
    {
        GgufString s => s.Length,
        GgufString[] a => a.Sum(s => (long)s.Length),
        GgufValue[] a => a.Sum(Touch),
        Array a => a.Length,
        _ => 1,
    };

    private static readonly ulong[] Specials =
    [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14, 31, 32, 33, 36, 38, 39, 63, 64, 255, 256, 0xFFFF, 0x7FFFFFFF, 0x80000000,
        0xFFFFFFFF, 1UL << 32, 1UL << 40, 1UL << 61, 1UL << 62, long.MaxValue, 1UL << 63, ulong.MaxValue, ulong.MaxValue - 31,
    ];

    private static byte[] Mutate(SeedFile s, Random rng, out string how)
    {
        var header = s.HeaderLength;
        switch (rng.Next(8))
        {
            case 0:
            {
                var m = Copy(s.Bytes);
                var flips = rng.Next(1, 9);
                for (var i = 0; i < flips; i++)
                    m[rng.Next(header)] ^= (byte)(1 << rng.Next(8));
                how = $"{flips} bit flips in the header";
                return m;
            }
            case 1:
            {
                var length = rng.Next(2) == 0 ? rng.Next(header + 1) : rng.Next(s.Bytes.Length);
                how = $"truncation to {length} bytes";
                return s.Bytes[..length];
            }
            case 2 or 3 or 4:
            {
                var kinds = Enum.GetValues<GgufFieldKind>().Where(k => s.FieldsByKind[(int)k].Length > 0).ToArray();
                var kind = kinds[rng.Next(kinds.Length)];
                var fields = s.FieldsByKind[(int)kind];
                var field = fields[rng.Next(fields.Length)];
                var m = Copy(s.Bytes);
                var original = field.Size == 8
                    ? BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan(field.Offset))
                    : BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(field.Offset));
                var value = rng.Next(10) switch
                {
                    < 5 => Specials[rng.Next(Specials.Length)],
                    < 7 => unchecked(original + (ulong)rng.Next(-9, 10)),
                    7 => (ulong)(s.Bytes.Length - rng.Next(64)),
                    _ => (ulong)rng.NextInt64() >> rng.Next(64),
                };
                if (field.Size == 8)
                    BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(field.Offset), value);
                else
                    BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(field.Offset), (uint)value);
                how = $"{kind} at {field.Offset} set to {value} (was {original})";
                return m;
            }
            case 5:
            {
                var m = Copy(s.Bytes);
                var start = rng.Next(header);
                var n = Math.Min(rng.Next(1, 65), header - start);
                rng.NextBytes(m.AsSpan(start, n));
                how = $"{n} random bytes at {start}";
                return m;
            }
            case 6:
            {
                var at = rng.Next(header);
                var n = rng.Next(1, 17);
                if (rng.Next(2) == 0)
                {
                    n = Math.Min(n, s.Bytes.Length - at);
                    how = $"{n} bytes deleted at {at}";
                    return [.. s.Bytes.AsSpan(0, at), .. s.Bytes.AsSpan(at + n)];
                }
                var inserted = new byte[n];
                rng.NextBytes(inserted);
                how = $"{n} bytes inserted at {at}";
                return [.. s.Bytes.AsSpan(0, at), .. inserted, .. s.Bytes.AsSpan(at)];
            }
            default:
            {
                var m = new byte[rng.Next(24, 4096)];
                rng.NextBytes(m);
                BinaryPrimitives.WriteUInt32LittleEndian(m, GgufFile.Magic);
                BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), 3);
                BinaryPrimitives.WriteInt64LittleEndian(m.AsSpan(8), rng.Next(4));
                BinaryPrimitives.WriteInt64LittleEndian(m.AsSpan(16), rng.Next(8));
                how = $"{m.Length} random bytes behind a valid fixed header";
                return m;
            }
        }
    }

    private static byte[] Copy(byte[] source)
    {
        var m = GC.AllocateUninitializedArray<byte>(source.Length);
        source.CopyTo(m, 0);
        return m;
    }

    public static TheoryData<string> DenseShapes() => ["kvs", "string values", "short strings", "empty strings", "nested empty arrays", "bools", "tensors"];

    /// <summary>
    /// The densest headers possible (the most items per byte) for each item kind: this pins the per-byte
    /// allocation bound the fuzzer asserts.
    /// </summary>
    [Theory]
    [MemberData(nameof(DenseShapes))]
    public void Dense_headers_allocate_a_bounded_multiple_of_their_size(string shape)
    {
        const int n = 20_000;
        var raw = shape switch
        {
            "kvs" => Repeat(RawGguf.Header(0, n), n, (r, i) => r.Kv($"k{i:D5}", GgufValueType.UInt8).U8(1)),
            "string values" => Repeat(RawGguf.Header(0, n), n, (r, i) => r.Kv($"k{i:D5}", GgufValueType.String).Str("")),
            "short strings" => Repeat(RawGguf.Header(0, 1).Kv("a", GgufValueType.Array).U32((uint)GgufValueType.String).U64(10 * n), 10 * n, (r, _) => r.Str("x")),
            "empty strings" => Repeat(RawGguf.Header(0, 1).Kv("a", GgufValueType.Array).U32((uint)GgufValueType.String).U64(10 * n), 10 * n, (r, _) => r.U64(0)),
            "nested empty arrays" => Repeat(RawGguf.Header(0, 1).Kv("a", GgufValueType.Array).U32((uint)GgufValueType.Array).U64(10 * n), 10 * n,
                (r, _) => r.U32((uint)GgufValueType.UInt8).U64(0)),
            "bools" => Repeat(RawGguf.Header(0, 1).Kv("a", GgufValueType.Array).U32((uint)GgufValueType.Bool).U64(10 * n), 10 * n, (r, _) => r.U8(1)),
            _ => Repeat(RawGguf.Header(n, 0), n, (r, i) => r.Tensor($"t{i:D5}", [0], 0, 0)).PadTo(32),
        };
        var bytes = raw.ToArray();
        using (var warmUp = GgufFile.FromBytes(Copy(bytes)))
            Exercise(warmUp);
        var before = GC.GetAllocatedBytesForCurrentThread();
        using (var f = GgufFile.FromBytes(bytes))
            Exercise(f);
        var ratio = (double)(GC.GetAllocatedBytesForCurrentThread() - before) / bytes.Length;
        output.WriteLine($"{shape}: {bytes.Length} bytes, {ratio:F2} bytes allocated per byte");
        Assert.InRange(ratio, 0, AllocationPerByte);
    }

    private static RawGguf Repeat(RawGguf raw, int n, Action<RawGguf, int> item)
    {
        for (var i = 0; i < n; i++)
            item(raw, i);
        return raw;
    }
}
