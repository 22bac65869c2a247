using System.Text.Json;
using Lutra.Tests;

namespace Lutra.Cli.Tests;

[Collection(ConsoleCollection.Name)]
public class BenchCommandTests
{
    [Fact]
    public void Json_rows_carry_llama_bench_fields_and_a_roofline_share()
    {
        var model = SharedData.Model("stories260K.gguf");
        var (exit, stdout, stderr) = LutraCli.Run("bench", "-m", model, "-p", "8", "-n", "4", "-t", "1", "-r", "1", "--json");
        Assert.True(exit == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var rows = json.RootElement.EnumerateArray().ToArray();
        Assert.Equal(2, rows.Length); // pp8 and tg4
        Assert.Equal(8, rows[0].GetProperty("n_prompt").GetInt32());
        Assert.Equal(4, rows[1].GetProperty("n_gen").GetInt32());
        foreach (var row in rows)
        {
            Assert.Equal(1, row.GetProperty("n_threads").GetInt32());
            Assert.Equal("f16", row.GetProperty("type_k").GetString());
            Assert.True(row.GetProperty("avg_ts").GetDouble() > 0);
            Assert.True(row.GetProperty("probe_gbps").GetDouble() > 0);
            // stories260K (reference/README.md §1: n_embd 64, n_ff 172, 5 layers, 4 KV heads of 8, vocab 512):
            // 5 × (64 + 64·64 + 2·64·32 + 64·64 + 64 + 3·64·172) + 2·64·512 + 64 = 292,800 parameters.
            Assert.Equal(292_800, row.GetProperty("model_n_params").GetInt64());
            var achieved = row.GetProperty("achieved_gbps").GetDouble();
            var share = row.GetProperty("roofline_pct").GetDouble();
            Assert.Equal(100 * achieved / row.GetProperty("probe_gbps").GetDouble(), share, 6);
            // One repetition: its GB/s against the best of the probes beside it.
            var ceiling = Assert.Single(row.GetProperty("adjacent_probe_gbps").EnumerateArray()).GetDouble();
            Assert.True(ceiling > 0);
            var rate = Assert.Single(row.GetProperty("samples_ts").EnumerateArray()).GetDouble();
            var bytes = row.GetProperty("weight_bytes_per_token").GetInt64();
            Assert.Equal(100 * bytes * rate / 1e9 / ceiling, row.GetProperty("adjacent_roofline_pct").GetDouble(), 6);
            // Linux reports the hypervisor's steal time (null when the runs took less than a clock tick); elsewhere
            // the field is null.
            var steal = row.GetProperty("cpu_steal_pct");
            if (OperatingSystem.IsLinux() && steal.ValueKind != JsonValueKind.Null)
                Assert.InRange(steal.GetDouble(), 0, 100);
            else
                Assert.Equal(JsonValueKind.Null, steal.ValueKind);
        }
        // Generation reads every matrix per token: the F32 output matrix (512 x 64) alone is 131,072 bytes.
        Assert.True(rows[1].GetProperty("weight_bytes_per_token").GetInt64() > 131_072);
    }

    [Fact]
    public void Bad_arguments_are_one_error_line()
    {
        var (exit, _, stderr) = LutraCli.Run("bench", "--synthetic", "llama-1b");
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", stderr);
        Assert.Contains("SHAPE:TYPE", stderr);
        (exit, _, stderr) = LutraCli.Run("bench", "--synthetic", "llama-1b:Q9_9");
        Assert.Equal(1, exit);
        Assert.Contains("not a weight type", stderr);
    }
}
